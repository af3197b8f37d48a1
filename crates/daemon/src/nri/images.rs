//! What a container runs, as containerd's own records say: an image record's layers
//! (platform manifest, config diff IDs) as a chain ID, and the chain a container's root
//! filesystem snapshot sits on, so the gate judges the content that runs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use api::codes::ReasonCode;

use super::CRI_NAMESPACE;
use crate::watcher::{connect_containerd, get_image, read_content, snapshot_parent};

/// containerd's API, connected on first use and again after a failure.
pub(super) struct Images {
    containerd_socket: PathBuf,
    channel: tokio::sync::Mutex<Option<Channel>>,
    /// What image records' content is made of, by target digest (content under a
    /// digest never changes); bounded.
    chains: std::sync::Mutex<std::collections::HashMap<String, Content>>,
    /// Record names read live whose target was the image CRI then ran, the views
    /// agreeing (config and manifest as containerd named them, the root filesystem on its
    /// layers): name -> (target digest, when). Bounded, and forgotten after
    /// [`REMEMBER_FOR`].
    names: std::sync::Mutex<std::collections::HashMap<String, (String, Instant)>>,
}

/// An image's content for this node's platform, as the gate compares it with what runs.
#[derive(Clone)]
pub(super) struct Content {
    /// The platform manifest's digest (the record's own digest when it is a manifest).
    manifest: String,
    /// The config's digest: the image ID CRI names.
    config: String,
    /// The chain ID of its layers.
    chain: String,
}

/// How long a name is remembered to have pointed at an image CRI ran.
const REMEMBER_FOR: Duration = Duration::from_secs(600);
/// Names remembered at most.
const MAX_NAMES: usize = 4096;
/// Chain IDs remembered at most.
const MAX_CHAINS: usize = 4096;
/// The largest index, manifest or config read to learn an image's layers.
const MAX_IMAGE_DOC: usize = 4 << 20;
/// Layers an image may have (Docker's limit is 127; OCI sets none).
const MAX_LAYERS: usize = 1024;

/// A container's root filesystem as containerd's snapshotter holds it.
pub(super) struct RootFs {
    /// The snapshotter's name.
    snapshotter: String,
    /// The chain ID of the layers under it.
    parent: String,
}

impl Images {
    pub(super) fn new(containerd_socket: PathBuf) -> Images {
        Images {
            containerd_socket,
            channel: tokio::sync::Mutex::new(None),
            chains: std::sync::Mutex::default(),
            names: std::sync::Mutex::default(),
        }
    }

    /// The digest of containerd's image record of `image` (in its normal form), or why
    /// there is none.
    pub(super) async fn digest_of(&self, image: &str) -> Result<String, String> {
        let name = record_name(image)?;
        let channel = self.channel().await?;
        match get_image(&channel, CRI_NAMESPACE, &name).await {
            Ok(Some(record)) => record
                .target
                .map(|t| t.digest)
                .filter(|d| !d.is_empty())
                .ok_or_else(|| format!("containerd's image record {name} has no target digest")),
            Ok(None) => Err(format!(
                "containerd has no image record {name} in namespace {CRI_NAMESPACE}"
            )),
            Err(e) => {
                // Connected again on the next call.
                *self.channel.lock().await = None;
                Err(format!("cannot read containerd's image record {name}: {e}"))
            }
        }
    }

    /// The image CRI resolved for this creation, without asking containerd, when that is
    /// as safe as asking: containerd names it (`cri`, 2.4 and later: its target digest
    /// and config, from CRI's own metadata of the creation, which a CRI client cannot
    /// set), its content is known (content under a digest never changes) with that
    /// config, and the record of `image`'s normal form was read live within
    /// [`REMEMBER_FOR`] to point at that very digest with every view agreeing. The
    /// verdict is then worked out for the image that runs, under the name that pointed at
    /// it; a name re-pointed since is read live again as soon as CRI runs anything else.
    /// On 2.3 (no `cri`) the record and the root filesystem are always read: an image
    /// with the same layers and another config is only seen there by the record.
    pub(super) fn remembered(&self, image: &str, cri: Option<&nri::api::Image>) -> Option<String> {
        let cri = cri.filter(|c| !c.digest.is_empty() && !c.config_digest.is_empty())?;
        let name = record_name(image).ok()?;
        {
            let names = self.names.lock().unwrap_or_else(|p| p.into_inner());
            let (digest, when) = names.get(&name)?;
            if *digest != cri.digest || when.elapsed() > REMEMBER_FOR {
                return None;
            }
        }
        let chains = self.chains.lock().unwrap_or_else(|p| p.into_inner());
        let content = chains.get(&cri.digest)?;
        (content.config == cri.config_digest).then(|| cri.digest.clone())
    }

    /// Remember that the record of `image` pointed at `digest`, the image CRI ran for a
    /// creation whose every view agreed ([`Images::remembered`]); only where containerd
    /// names that image.
    pub(super) fn remember(&self, image: &str, digest: &str, cri: Option<&nri::api::Image>) {
        if !cri.is_some_and(|c| c.digest == digest && !c.config_digest.is_empty()) {
            return;
        }
        let Ok(name) = record_name(image) else { return };
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        if names.len() >= MAX_NAMES {
            names.clear();
        }
        names.insert(name, (digest.to_owned(), Instant::now()));
    }

    /// Whether what CRI creates the container from is the image record content
    /// `digest` the gate judged: the root filesystem CRI prepared for it (the snapshot of
    /// that key) must sit on the same layers, and where containerd names the image CRI
    /// resolved for this creation (`cri`: containerd 2.4 and later, NRI v0.12.3), its
    /// config and manifest must be the judged ones too (same layers under another
    /// config — entrypoint, environment, user — is another image). Else the reason to
    /// refuse and why.
    ///
    /// `root` is [`Images::root_of`] the container, asked beside the image record (the
    /// two reads do not depend on each other: one round trip to containerd instead of
    /// two in a row).
    pub(super) async fn runs(
        &self,
        digest: &str,
        cri: Option<&nri::api::Image>,
        root: Result<RootFs, String>,
    ) -> Result<(), (ReasonCode, String)> {
        let unresolved = |why: String| (ReasonCode::ImageUnresolved, why);
        let channel = self.channel().await.map_err(unresolved)?;
        let judged = self
            .content_of(&channel, digest)
            .await
            .map_err(unresolved)?;
        let mismatch = |what: String| {
            (
                ReasonCode::ContainerImageMismatch,
                format!("{what}: the name CRI passed (io.kubernetes.cri.image-name, which a CRI client can set) and the image CRI creates the container from disagree"),
            )
        };
        if let Some(cri) = cri {
            if !cri.config_digest.is_empty() && cri.config_digest != judged.config {
                return Err(mismatch(format!(
                    "CRI creates the container from image {} (config), not the image the gate was told it runs ({digest}, config {})",
                    api::capped(&cri.config_digest, 80),
                    judged.config
                )));
            }
            if !cri.digest.is_empty() && cri.digest != digest && cri.digest != judged.manifest {
                return Err(mismatch(format!(
                    "CRI resolved image {} for the container, not the image the gate was told it runs ({digest})",
                    api::capped(&cri.digest, 80)
                )));
            }
        }
        let RootFs {
            snapshotter,
            parent,
        } = root.map_err(unresolved)?;
        if parent == judged.chain {
            return Ok(());
        }
        Err(mismatch(format!(
            "the container's root filesystem ({snapshotter} snapshot, layers {}) is not the image the gate was told it runs ({digest}, layers {})",
            api::capped(&parent, 80),
            judged.chain
        )))
    }

    /// The layers under container `id`'s root filesystem: the parent of the snapshot CRI
    /// prepared for it, or why that is unknown.
    pub(super) async fn root_of(&self, id: &str) -> Result<RootFs, String> {
        let channel = self.channel().await?;
        let (snapshotter, parent) = snapshot_parent(&channel, CRI_NAMESPACE, id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "containerd has no root filesystem snapshot for container {}, so what it would run is unknown",
                    api::capped(id, 80)
                )
            })?;
        Ok(RootFs {
            snapshotter,
            parent,
        })
    }

    /// What image content `digest` is made of for this node's platform.
    pub(super) async fn content_of(
        &self,
        channel: &Channel,
        digest: &str,
    ) -> Result<Content, String> {
        if let Some(c) = self
            .chains
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
        {
            return Ok(c.clone());
        }
        let read = |d: String| async move {
            read_content(channel, CRI_NAMESPACE, &d, MAX_IMAGE_DOC)
                .await
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    serde_json::from_slice::<serde_json::Value>(&b)
                        .map_err(|e| format!("image content {d} is not JSON: {e}"))
                })
        };
        let mut doc = read(digest.to_owned()).await?;
        let mut manifest = digest.to_owned();
        if let Some(list) = doc["manifests"].as_array() {
            let (os, arch) = platform();
            let m = list
                .iter()
                .find(|m| m["platform"]["os"] == os && m["platform"]["architecture"] == arch)
                .and_then(|m| m["digest"].as_str())
                .ok_or_else(|| format!("image index {digest} has no manifest for {os}/{arch}"))?;
            m.clone_into(&mut manifest);
            doc = read(m.to_owned()).await?;
        }
        let config = doc["config"]["digest"]
            .as_str()
            .ok_or_else(|| format!("image manifest of {digest} names no config"))?
            .to_owned();
        let config_doc = read(config.clone()).await?;
        let diff_ids: Vec<&str> = config_doc["rootfs"]["diff_ids"]
            .as_array()
            .map(|a| a.iter().filter_map(|d| d.as_str()).collect())
            .unwrap_or_default();
        if diff_ids.is_empty() || diff_ids.len() > MAX_LAYERS {
            return Err(format!(
                "image {digest} has {} layers in its config",
                diff_ids.len()
            ));
        }
        let content = Content {
            manifest,
            config,
            chain: chain_id(&diff_ids),
        };
        let mut chains = self.chains.lock().unwrap_or_else(|p| p.into_inner());
        if chains.len() >= MAX_CHAINS {
            chains.clear();
        }
        chains.insert(digest.to_owned(), content.clone());
        Ok(content)
    }

    pub(super) async fn channel(&self) -> Result<Channel, String> {
        let mut held = self.channel.lock().await;
        if let Some(c) = held.as_ref() {
            return Ok(c.clone());
        }
        let c = connect_containerd(&self.containerd_socket)
            .await
            .map_err(|e| e.to_string())?;
        *held = Some(c.clone());
        Ok(c)
    }
}

/// The name of the record CRI itself resolves for `image`: its normal form (CRI
/// normalises what the kubelet wrote before it looks the image up, and drops the tag of a
/// reference that also has a digest). A record stored under the name as written, if it
/// differs, is not what runs, so it is never consulted.
pub(super) fn record_name(image: &str) -> Result<String, String> {
    if image.is_empty() {
        return Err(format!(
            "the container carries no {} annotation, so the image it is created from is unknown",
            nri::IMAGE_NAME_ANNOTATION
        ));
    }
    Ok(match policy::ImageRef::parse(image) {
        Ok(r) => {
            // CRI keeps a host as written, where the policy knows one spelling
            // (lower case, no trailing dot, no :443): under another spelling CRI
            // would resolve a record other than the one judged here.
            let written = image.split_once('/').map(|(first, _)| first).filter(|f| {
                f.contains(['.', ':'])
                    || *f == "localhost"
                    || f.chars().any(|c| c.is_ascii_uppercase())
            });
            if let Some(host) = written {
                let same =
                    host == r.domain || (host == "index.docker.io" && r.domain == "docker.io");
                if !same {
                    return Err(format!(
                        "the image's registry host is written {host}, which containerd keeps as written while pullguard judges {}: write the image with that host",
                        r.domain
                    ));
                }
            }
            // CRI resolves `name:tag@digest` by its digest alone.
            if r.digest.is_some() {
                policy::ImageRef { tag: None, ..r }.to_string()
            } else {
                r.to_string()
            }
        }
        Err(_) => image.to_owned(),
    })
}

/// The OCI chain ID of layers with these diff IDs: the first diff ID, then
/// `sha256(previous + " " + next)` for each next one (what containerd names a
/// committed snapshot of those layers).
pub(super) fn chain_id(diff_ids: &[&str]) -> String {
    use sha2::{Digest as _, Sha256};
    let mut chain = diff_ids.first().copied().unwrap_or_default().to_owned();
    for d in diff_ids.iter().skip(1) {
        chain = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(format!("{chain} {d}").as_bytes()))
        );
    }
    chain
}

/// This node's platform as OCI names it (containerd's CRI picks the same).
fn platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    ("linux", arch)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const NAME: &str = "registry.example.com/app:latest";

    fn cri(digest: &str, config: &str) -> nri::api::Image {
        nri::api::Image {
            name: NAME.into(),
            digest: digest.into(),
            config_digest: config.into(),
        }
    }

    /// Images knowing content `sha256:d1` (config `sha256:c1`), never connected.
    fn images() -> Images {
        let images = Images::new(PathBuf::from("/nonexistent/containerd.sock"));
        // Content is learnt by reading it from containerd; here, given.
        images.chains.lock().unwrap().insert(
            "sha256:d1".into(),
            Content {
                manifest: "sha256:d1".into(),
                config: "sha256:c1".into(),
                chain: "sha256:l1".into(),
            },
        );
        images
    }

    #[test]
    fn a_remembered_name_vouches_only_for_the_very_image_containerd_names() {
        let images = images();
        let ran = cri("sha256:d1", "sha256:c1");
        // Nothing remembered yet: read live.
        assert_eq!(images.remembered(NAME, Some(&ran)), None);
        images.remember(NAME, "sha256:d1", Some(&ran));
        assert_eq!(
            images.remembered(NAME, Some(&ran)).as_deref(),
            Some("sha256:d1")
        );
        // The same name spelled as the kubelet may write it: one record name.
        assert_eq!(
            images
                .remembered("registry.example.com/app", Some(&ran))
                .as_deref(),
            Some("sha256:d1")
        );
        // containerd 2.3 names no image: always read live.
        assert_eq!(images.remembered(NAME, None), None);
        // CRI runs another image, or the same one under another config, or names only
        // part of it: read live.
        assert_eq!(
            images.remembered(NAME, Some(&cri("sha256:d2", "sha256:c1"))),
            None
        );
        assert_eq!(
            images.remembered(NAME, Some(&cri("sha256:d1", "sha256:c2"))),
            None
        );
        assert_eq!(images.remembered(NAME, Some(&cri("sha256:d1", ""))), None);
        // Another name never read: read live.
        assert_eq!(
            images.remembered("registry.example.com/other:v1", Some(&ran)),
            None
        );
        // The name re-pointed (read live for another image): the old image is no longer
        // vouched for by memory.
        images.remember(NAME, "sha256:d2", Some(&cri("sha256:d2", "sha256:c2")));
        assert_eq!(images.remembered(NAME, Some(&ran)), None);
    }

    #[test]
    fn nothing_is_remembered_where_containerd_names_no_image_or_another() {
        let images = images();
        let ran = cri("sha256:d1", "sha256:c1");
        images.remember(NAME, "sha256:d1", None);
        assert_eq!(images.remembered(NAME, Some(&ran)), None);
        // The views agreed through the platform manifest, not the record's target.
        images.remember(NAME, "sha256:d1", Some(&cri("sha256:m1", "sha256:c1")));
        assert_eq!(images.remembered(NAME, Some(&ran)), None);
        // A name containerd keeps as written otherwise than the policy's spelling.
        images.remember("REGISTRY.example.com/app", "sha256:d1", Some(&ran));
        assert_eq!(
            images.remembered("REGISTRY.example.com/app", Some(&ran)),
            None
        );
    }

    #[test]
    fn a_memory_older_than_its_time_is_read_live_again() {
        let images = images();
        let ran = cri("sha256:d1", "sha256:c1");
        images.remember(NAME, "sha256:d1", Some(&ran));
        let old = Instant::now()
            .checked_sub(REMEMBER_FOR + Duration::from_secs(1))
            .unwrap();
        images.names.lock().unwrap().get_mut(NAME).unwrap().1 = old;
        assert_eq!(images.remembered(NAME, Some(&ran)), None);
    }
}
