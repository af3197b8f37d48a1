//! The OCI distribution API, read-only, as pullguardd needs it to find signatures stored
//! beside images: manifests by tag or digest, blobs by digest, and the OCI 1.1 referrers
//! API with its tag-schema fallback. Registry access follows containerd's: `hosts.toml`
//! under a `config_path` for mirrors, CAs and plain-HTTP registries ([`hosts`]), and
//! credentials from a docker `config.json` ([`auth`]).
//!
//! Everything read is bounded; content fetched by digest is hashed and compared, so a
//! mirror cannot substitute it. Nothing here decides whether a signature is good.

#![deny(missing_docs)]

pub mod auth;
mod budget;
mod error;
pub mod hosts;
mod transport;
mod wire;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

pub use auth::Credentials;
pub use budget::Budget;
pub use error::{Error, ErrorClass};
pub use hosts::Endpoint;

/// Manifests and indexes: registries cap them at 4 MiB.
pub const MAX_MANIFEST: usize = 4 << 20;
/// Referrers considered for one image at most.
pub const MAX_REFERRERS: usize = 64;
const MAX_TOKEN_ANSWER: usize = 1 << 20;
/// Hosts (and tokens) a client remembers at most.
const MAX_HOSTS: usize = 1024;
/// A token is reused this long when the service does not say (Docker's default is 60 s).
const TOKEN_REUSE: Duration = Duration::from_secs(50);

/// The artifact type of an artifact with an empty config, as some tools (cosign 2.6's
/// `--new-bundle-format`) write it into a referrers index entry; the manifest says more.
pub const EMPTY_ARTIFACT_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// The media types a manifest or index may have.
pub const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// A document fetched from a registry.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its media type, from the document itself when it says, else the header.
    pub media_type: String,
    /// `sha256:<hex>` of the bytes, computed here.
    pub digest: String,
}

/// Pages of a referrers answer followed at most.
pub const MAX_PAGES: usize = 8;

/// What a referrers lookup found.
#[derive(Debug, Default)]
pub struct Referrers {
    /// Descriptors of the artifact types asked for, at most [`MAX_REFERRERS`], in the
    /// registry's order.
    pub matching: Vec<Descriptor>,
    /// Entries passed over because they could not be read as descriptors.
    pub broken: usize,
    /// Entries of other artifact types (SBOMs, attestations, …).
    pub other: usize,
    /// The registry listed more than was read: pages past [`MAX_PAGES`], or matching
    /// entries past [`MAX_REFERRERS`]. A signature may be among those not read, so a
    /// caller that finds none must not take the image for unsigned.
    pub unread: bool,
}

/// One answer of a GET.
struct Got {
    bytes: Vec<u8>,
    media_type: String,
    url: String,
    /// The `Link: <…>; rel="next"` of a paged answer, on the same origin.
    next: Option<String>,
}

/// A descriptor from an index (referrers answer or fallback tag).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    /// Media type of what it points to.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// Its digest.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// The artifact type, for referrers.
    #[serde(rename = "artifactType", default)]
    pub artifact_type: String,
}

#[derive(Deserialize)]
struct Index {
    // Entries one at a time: a broken one is counted and passed over, not fatal.
    #[serde(default)]
    manifests: Vec<serde_json::Value>,
}

/// Builds the HTTP client of registries verified with the system's roots (with
/// `timeout`, [`Client::new`]'s) now, when a policy generation is prepared, so that no
/// verdict pays for reading the root store (4–12 ms), and so that each generation reads
/// the store as it is then (a CA removed from the node's store is gone after a reload).
/// Shared by every [`Client`] until the next call.
pub fn refresh_system_roots(timeout: Duration) {
    wire::refresh(timeout);
}

/// A client for every registry, configured like the node's containerd.
pub struct Client {
    config_path: Option<PathBuf>,
    credentials: Credentials,
    timeout: Duration,
    /// HTTP itself (reqwest; scripted in the unit tests).
    wire: Box<dyn wire::Wire>,
    /// Bearer tokens per endpoint and repository (at most [`MAX_HOSTS`]).
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// Each host's endpoints, from hosts.toml (at most [`MAX_HOSTS`]).
    endpoints: Mutex<HashMap<String, Result<Vec<Endpoint>, String>>>,
    /// Hosts reached over plain HTTP when no hosts.toml says otherwise (the CLI's
    /// `--insecure-registry`).
    plain_http: Vec<String>,
}

impl Client {
    /// A client reading `hosts.toml` files under `config_path` and credentials from
    /// `auth_file`. Returns warnings for what the credentials file holds but is not used.
    pub fn new(
        config_path: Option<&Path>,
        auth_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<(Client, Vec<String>), Error> {
        let (credentials, warnings) = match auth_file {
            Some(f) => Credentials::load(f)?,
            None => (Credentials::default(), Vec::new()),
        };
        Ok((
            Client {
                config_path: config_path.map(Path::to_path_buf),
                credentials,
                timeout,
                wire: Box::new(wire::Reqwest::new(timeout)),
                tokens: Mutex::default(),
                endpoints: Mutex::default(),
                plain_http: Vec::new(),
            },
            warnings,
        ))
    }

    /// Reaches `hosts` over plain HTTP where no hosts.toml names their server.
    pub fn with_plain_http(mut self, hosts: Vec<String>) -> Client {
        self.plain_http = hosts;
        self
    }

    /// The manifest `reference` (a tag, or `sha256:<hex>`) of `repo` on `host`; `None`
    /// when the registry says it does not exist. By digest, the bytes must hash to it.
    pub async fn manifest(
        &self,
        host: &str,
        repo: &str,
        reference: &str,
        budget: &Budget,
    ) -> Result<Option<Fetched>, Error> {
        let by_digest = reference.starts_with("sha256:");
        let got = self
            .get(
                host,
                repo,
                &format!("manifests/{reference}"),
                by_digest,
                MAX_MANIFEST,
                budget,
            )
            .await?;
        let Some(Got {
            bytes,
            media_type: header_type,
            url,
            ..
        }) = got
        else {
            return Ok(None);
        };
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if by_digest && digest != reference {
            return Err(Error::Invalid {
                url,
                detail: format!("a manifest hashing to {digest}, not the {reference} asked for"),
            });
        }
        #[derive(Deserialize)]
        struct Typed {
            #[serde(rename = "mediaType")]
            media_type: Option<String>,
        }
        let media_type = serde_json::from_slice::<Typed>(&bytes)
            .ok()
            .and_then(|t| t.media_type)
            .unwrap_or(header_type);
        Ok(Some(Fetched {
            bytes,
            media_type,
            digest,
        }))
    }

    /// The blob `digest` of `repo`, at most `limit` bytes, checked against its digest.
    pub async fn blob(
        &self,
        host: &str,
        repo: &str,
        digest: &str,
        limit: usize,
        budget: &Budget,
    ) -> Result<Vec<u8>, Error> {
        let path = format!("blobs/{digest}");
        let got = self
            .get(host, repo, &path, true, limit, budget)
            .await?
            .ok_or_else(|| Error::Refused {
                url: format!("{host}/{repo}/{path}"),
                status: 404,
                detail: ": a blob its manifest lists is missing".to_owned(),
            })?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&got.bytes)));
        if actual != digest {
            return Err(Error::Invalid {
                url: got.url,
                detail: format!("a blob hashing to {actual}, not {digest}"),
            });
        }
        Ok(got.bytes)
    }

    /// The manifests that refer to `digest` with one of `artifact_types`: the OCI 1.1
    /// referrers API (every page), or, where the registry has none, the tag-schema
    /// fallback `sha256-<hex>`. Entries are filtered by type before anything is capped,
    /// so SBOMs or junk piled up beside an image cannot push its signatures out; broken
    /// entries are counted and passed over.
    pub async fn referrers(
        &self,
        host: &str,
        repo: &str,
        digest: &str,
        artifact_types: &[&str],
        budget: &Budget,
    ) -> Result<Referrers, Error> {
        let mut path = format!("referrers/{digest}");
        if let [only] = artifact_types {
            path = format!("{path}?artifactType={only}");
        }
        let mut found = Referrers::default();
        // The referrers API and its fallback, the tag schema, asked together: a
        // registry without the API answers the first with 404 and only then would the
        // second be asked, a round trip more on every cold verdict. The API's answer
        // counts whenever it gives one; the tag's (and its error) only when it does not.
        let tag = format!("manifests/{}", digest.replacen(':', "-", 1));
        let (api, fallback) = tokio::join!(
            self.get(host, repo, &path, true, MAX_MANIFEST, budget),
            self.get(host, repo, &tag, false, MAX_MANIFEST, budget),
        );
        let mut page = match api? {
            Some(got) => Some(got),
            None => fallback?,
        };
        let mut pages = 0;
        while let Some(got) = page.take() {
            pages += 1;
            let index: Index = serde_json::from_slice(&got.bytes).map_err(|e| Error::Invalid {
                url: got.url.clone(),
                detail: format!("a referrers index that is not an OCI index: {e}"),
            })?;
            for entry in index.manifests {
                // Registries may ignore the filter; it is applied here too.
                match serde_json::from_value::<Descriptor>(entry) {
                    Ok(d) if artifact_types.contains(&d.artifact_type.as_str()) => {
                        if found.matching.len() < MAX_REFERRERS {
                            found.matching.push(d);
                        } else {
                            found.unread = true;
                        }
                    }
                    Ok(_) => found.other += 1,
                    Err(_) => found.broken += 1,
                }
            }
            if found.matching.len() >= MAX_REFERRERS || pages >= MAX_PAGES {
                found.unread |= got.next.is_some();
                break;
            }
            if let Some(next) = got.next {
                let e = self.endpoint_of(host, &next)?;
                page = self
                    .get_one(&e, host, repo, &next, MAX_MANIFEST, budget)
                    .await?;
            }
        }
        Ok(found)
    }

    /// Opens three connections to `host`'s first endpoint ahead of the first verdict that
    /// asks it: a cold verdict's first round is three requests at once, and opening
    /// them costs the registry about as much as answering one. Each asks `/v2/` with no
    /// credentials and reads at most 64 KiB of the answer (so that the connection goes
    /// back to the pool); whatever fails is the verdict's own request to report.
    pub async fn warm(&self, host: &str) {
        const LIMIT: usize = 64 * 1024;
        let Ok(endpoints) = self.endpoints(host) else {
            return;
        };
        let Some(e) = endpoints.iter().find(|e| e.pull || e.resolve) else {
            return;
        };
        let url = if e.override_path {
            format!("{}/", e.url)
        } else {
            format!("{}/v2/", e.url)
        };
        let budget = Budget::new(3, 3 * LIMIT, self.timeout);
        let one = || async {
            if let Ok(answer) = self.send(e, &url, None, &budget).await {
                let _ = transport::read_capped(answer, LIMIT, &url, &budget).await;
            }
        };
        tokio::join!(one(), one(), one());
    }

    /// The endpoints of `host`, from hosts.toml read once per client (a policy
    /// generation: a reload makes a new client and so reads them again).
    fn endpoints(&self, host: &str) -> Result<Vec<Endpoint>, Error> {
        let mut cache = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = cache.get(host) {
            return found.clone().map_err(|detail| Error::HostsFile {
                path: self
                    .config_path
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                detail,
            });
        }
        let mut endpoints = hosts::endpoints(self.config_path.as_deref(), host);
        if let Ok(endpoints) = endpoints.as_mut() {
            if self.plain_http.iter().any(|h| h == host) {
                let https = format!("https://{}", hosts::api_host(host));
                for e in endpoints.iter_mut().filter(|e| e.url == https) {
                    e.url = format!("http://{}", hosts::api_host(host));
                }
            }
        }
        // Bounded: images name hosts, and images come from anywhere.
        if cache.len() >= MAX_HOSTS {
            cache.clear();
        }
        cache.insert(
            host.to_owned(),
            endpoints
                .as_ref()
                .map(Clone::clone)
                .map_err(ToString::to_string),
        );
        endpoints
    }

    /// The endpoint a paging link stays on: the origin of one of `host`'s endpoints.
    fn endpoint_of(&self, host: &str, url: &str) -> Result<Endpoint, Error> {
        self.endpoints(host)?
            .into_iter()
            .find(|e| url.starts_with(&format!("{}/", e.url)))
            .ok_or_else(|| Error::Invalid {
                url: codes::text::capped(url, 200),
                detail: "a referrers page link to another origin".to_owned(),
            })
    }
}

#[cfg(test)]
mod login_tests;
#[cfg(test)]
mod loop_tests;
#[cfg(test)]
mod tests;
