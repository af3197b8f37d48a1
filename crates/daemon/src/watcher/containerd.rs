//! The containerd side of the watcher: its events decoded, its images, namespaces and
//! leases listed, read and deleted. Only this file speaks containerd's API.

use std::path::Path;

use containerd_client::services::v1::events_client::EventsClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::namespaces_client::NamespacesClient;
use containerd_client::services::v1::{
    DeleteImageRequest, DeleteRequest, GetImageRequest, Image, ImageCreate, ImageUpdate,
    ListImagesRequest, ListNamespacesRequest, ListRequest, ListResourcesRequest, SubscribeRequest,
};
use containerd_client::types::{Descriptor, Envelope};
use prost::Message as _;
use tonic::transport::Channel;

use super::MAX_MESSAGE;

/// containerd answers these calls in milliseconds (a delete waits for its garbage
/// collection, seconds at most). One that has not answered in this long is wedged: the
/// watcher reconnects, and says so, instead of waiting for good while its status says
/// "watching".
const CALL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

/// `call`, or `Unavailable` when containerd has not answered it within [`CALL_DEADLINE`].
async fn within<T>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, ContainerdError>>,
) -> Result<T, ContainerdError> {
    tokio::time::timeout(CALL_DEADLINE, call)
        .await
        .unwrap_or_else(|_| {
            Err(ContainerdError::unavailable(
                what,
                format!(
                    "containerd did not answer within {}s",
                    CALL_DEADLINE.as_secs()
                ),
            ))
        })
}

/// What went wrong talking to containerd; each names what was being done.
#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    /// The record or lease is not there (deleted meanwhile, by us or by someone).
    #[error("{what}: not found")]
    NotFound {
        /// What was being done.
        what: String,
    },
    /// containerd is not there, stopped answering or closed the stream: the watcher
    /// reconnects and sweeps.
    #[error("{what}: containerd is unavailable: {detail}")]
    Unavailable {
        /// What was being done.
        what: String,
        /// What happened.
        detail: String,
    },
    /// containerd answered with another error.
    #[error("{what}: {detail}")]
    Failed {
        /// What was being done.
        what: String,
        /// containerd's message.
        detail: String,
    },
}

impl ContainerdError {
    fn from_status(what: impl Into<String>, s: &tonic::Status) -> ContainerdError {
        let what = what.into();
        match s.code() {
            tonic::Code::NotFound => ContainerdError::NotFound { what },
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                ContainerdError::Unavailable {
                    what,
                    detail: status_text(s),
                }
            }
            _ => ContainerdError::Failed {
                what,
                detail: status_text(s),
            },
        }
    }

    pub(super) fn unavailable(
        what: impl Into<String>,
        detail: impl Into<String>,
    ) -> ContainerdError {
        ContainerdError::Unavailable {
            what: what.into(),
            detail: detail.into(),
        }
    }
}

/// Which image event an envelope carries.
#[derive(Debug, PartialEq, Eq)]
pub enum ImageEvent {
    /// An image record was created.
    Create(String),
    /// An image record was changed (re-pull, re-tag).
    Update(String),
}

/// Decodes an image event. containerd writes type URLs without a leading `/`, which
/// prost's `Any::to_msg` would refuse. 1.x names the messages in its images service
/// package, 2.x in `containerd.events`; the fields are the same.
pub fn decode(any: &prost_types::Any) -> Option<ImageEvent> {
    let url = any.type_url.trim_start_matches('/');
    let name = url.rsplit_once('/').map_or(url, |(_, n)| n);
    let short = name
        .strip_prefix("containerd.events.")
        .or_else(|| name.strip_prefix("containerd.services.images.v1."))?;
    match short {
        "ImageCreate" => ImageCreate::decode(any.value.as_slice())
            .ok()
            .map(|e| ImageEvent::Create(e.name)),
        "ImageUpdate" => ImageUpdate::decode(any.value.as_slice())
            .ok()
            .map(|e| ImageEvent::Update(e.name)),
        _ => None,
    }
}

/// CRI names one record of every image by its config digest (`sha256:HEX`); such an
/// alias has no repository to check and follows its named siblings.
pub(super) fn is_alias(name: &str) -> bool {
    trust_core::Sha256::from_prefixed(name).is_some()
}

pub(super) fn in_namespace<T>(msg: T, namespace: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Ok(v) = namespace.parse() {
        req.metadata_mut().insert("containerd-namespace", v);
    }
    req
}

fn status_text(s: &tonic::Status) -> String {
    let mut text = if s.message().is_empty() {
        format!("{:?}", s.code())
    } else {
        s.message().to_owned()
    };
    if let Some(cause) = std::error::Error::source(s) {
        text.push_str(": ");
        text.push_str(&crate::error_chain(cause));
    }
    text
}

/// Every image in every namespace of the containerd at `socket`: (namespace, name,
/// target digest). For shadow evaluations (`pullguard policy diff`).
pub async fn list_all(socket: &Path) -> Result<Vec<(String, String, String)>, ContainerdError> {
    let channel = connect(socket).await?;
    let namespaces = namespaces(&channel).await?;
    let mut all = Vec::new();
    for ns in namespaces {
        for image in list_images(&channel, &ns, Vec::new()).await? {
            let digest = image.target.map(|t| t.digest).unwrap_or_default();
            all.push((ns.clone(), image.name, digest));
        }
    }
    Ok(all)
}

/// A channel to the containerd at `socket`.
pub(crate) async fn connect(socket: &Path) -> Result<Channel, ContainerdError> {
    within("connecting to containerd", async {
        containerd_client::connect(socket).await.map_err(|e| {
            ContainerdError::unavailable(
                format!("cannot connect to containerd at {}", socket.display()),
                crate::error_chain(&e),
            )
        })
    })
    .await
}

/// Subscribes to image creations and updates. containerd answers the subscription only
/// with its first event, so callers run this in a task of its own.
pub(super) async fn subscribe_images(
    channel: &Channel,
) -> Result<tonic::Streaming<Envelope>, ContainerdError> {
    let request = SubscribeRequest {
        filters: vec![
            r#"topic=="/images/create""#.to_owned(),
            r#"topic=="/images/update""#.to_owned(),
        ],
    };
    EventsClient::new(channel.clone())
        .max_decoding_message_size(MAX_MESSAGE)
        .subscribe(request)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| ContainerdError::from_status("cannot subscribe to events", &s))
}

/// The next event of a subscription; `None` when containerd closed it.
pub(super) async fn next_event(
    stream: &mut tonic::Streaming<Envelope>,
) -> Result<Option<Envelope>, ContainerdError> {
    stream.message().await.map_err(|s| {
        // A broken stream is containerd gone, whatever code it carries.
        ContainerdError::unavailable("event stream broke", status_text(&s))
    })
}

/// Deletes the image record `name`, but only while it still points at `judged` when that
/// is a sha256 digest (containerd 2.x checks; 1.6 ignores the field). `sync` waits for
/// garbage collection. `NotFound` when it is gone already.
pub(super) async fn delete_image(
    channel: &Channel,
    namespace: &str,
    name: &str,
    judged: &str,
    sync: bool,
) -> Result<(), ContainerdError> {
    within("deleting an image record", async {
        let target = valid_digest(judged).then(|| Descriptor {
            digest: judged.to_owned(),
            ..Default::default()
        });
        ImagesClient::new(channel.clone())
            .delete(in_namespace(
                DeleteImageRequest {
                    name: name.to_owned(),
                    sync,
                    target,
                },
                namespace,
            ))
            .await
            .map(|_| ())
            .map_err(|s| {
                ContainerdError::from_status(format!("cannot delete the image record {name}"), &s)
            })
    })
    .await
}

/// containerd's namespaces.
pub(super) async fn namespaces(channel: &Channel) -> Result<Vec<String>, ContainerdError> {
    within("listing namespaces", async {
        Ok(NamespacesClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .list(ListNamespacesRequest::default())
            .await
            .map_err(|s| ContainerdError::from_status("cannot list namespaces", &s))?
            .into_inner()
            .namespaces
            .into_iter()
            .map(|n| n.name)
            .collect())
    })
    .await
}

pub(super) async fn list_images(
    channel: &Channel,
    namespace: &str,
    filters: Vec<String>,
) -> Result<Vec<Image>, ContainerdError> {
    within("listing images", async {
        Ok(ImagesClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .list(in_namespace(ListImagesRequest { filters }, namespace))
            .await
            .map_err(|s| {
                ContainerdError::from_status(
                    format!("cannot list images in namespace {namespace}"),
                    &s,
                )
            })?
            .into_inner()
            .images)
    })
    .await
}

/// The records in `namespace` whose target is `digest`.
pub(super) async fn same_target(
    channel: &Channel,
    namespace: &str,
    digest: &str,
) -> Result<Vec<Image>, ContainerdError> {
    // Digests are sha256:HEX (checked by the caller), so quoting cannot be broken out of.
    list_images(
        channel,
        namespace,
        vec![format!(r#"target.digest=="{digest}""#)],
    )
    .await
}

pub(super) fn valid_digest(d: &str) -> bool {
    // Lower case only: it goes into a filter as written, and must equal what containerd
    // stores.
    trust_core::Sha256::from_prefixed(d).is_some_and(|h| d.ends_with(h.hex()))
}

/// The image record `name`, or `None` when it does not exist (any more).
pub(crate) async fn get_image(
    channel: &Channel,
    namespace: &str,
    name: &str,
) -> Result<Option<Image>, ContainerdError> {
    within("reading an image record", async {
        match ImagesClient::new(channel.clone())
            .get(in_namespace(
                GetImageRequest {
                    name: name.to_owned(),
                },
                namespace,
            ))
            .await
        {
            Ok(r) => Ok(r.into_inner().image),
            // Deleted meanwhile (by us for a sibling, or by someone).
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(ContainerdError::from_status(
                format!("cannot read the image record {name}"),
                &s,
            )),
        }
    })
    .await
}

/// Deletes the leases that hold `digest` (an unfinished pull's), so that containerd's
/// garbage collector can reclaim the rejected content. Returns what it deleted.
pub(super) async fn release_leases(
    channel: &Channel,
    namespace: &str,
    digest: &str,
) -> Result<Vec<String>, ContainerdError> {
    within("releasing leases", async {
        let mut leases = LeasesClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE);
        let all = leases
            .list(in_namespace(ListRequest::default(), namespace))
            .await
            .map_err(|s| ContainerdError::from_status("cannot list leases", &s))?
            .into_inner()
            .leases;
        let mut deleted = Vec::new();
        for lease in all {
            let resources = match leases
                .list_resources(in_namespace(
                    ListResourcesRequest {
                        id: lease.id.clone(),
                    },
                    namespace,
                ))
                .await
            {
                Ok(r) => r.into_inner().resources,
                Err(s) if s.code() == tonic::Code::NotFound => continue,
                Err(s) => {
                    return Err(ContainerdError::from_status(
                        format!("cannot list the resources of lease {}", lease.id),
                        &s,
                    ))
                }
            };
            if !resources.iter().any(|r| r.id == digest) {
                continue;
            }
            match leases
                .delete(in_namespace(
                    DeleteRequest {
                        id: lease.id.clone(),
                        sync: true,
                    },
                    namespace,
                ))
                .await
            {
                Ok(_) => deleted.push(format!("lease {}", lease.id)),
                Err(s) if s.code() == tonic::Code::NotFound => {}
                Err(s) => {
                    return Err(ContainerdError::from_status(
                        format!("cannot delete lease {}", lease.id),
                        &s,
                    ))
                }
            }
        }
        Ok(deleted)
    })
    .await
}

/// The snapshot `key` (CRI names a container's rootfs snapshot by the container's ID)
/// in whichever of containerd's snapshotters holds it: `(snapshotter, parent)`, where
/// the parent is the chain ID of the image layers the container's root filesystem is
/// made of. `None` when no snapshotter has it.
pub(crate) async fn snapshot_parent(
    channel: &Channel,
    namespace: &str,
    key: &str,
) -> Result<Option<(String, String)>, ContainerdError> {
    use containerd_client::services::v1::introspection_client::IntrospectionClient;
    use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
    use containerd_client::services::v1::snapshots::StatSnapshotRequest;
    use containerd_client::services::v1::PluginsRequest;
    let plugins = IntrospectionClient::new(channel.clone())
        .plugins(PluginsRequest {
            filters: vec!["type==io.containerd.snapshotter.v1".to_owned()],
        })
        .await
        .map_err(|s| ContainerdError::from_status("cannot list containerd's snapshotters", &s))?
        .into_inner()
        .plugins;
    let mut client = SnapshotsClient::new(channel.clone());
    // Only snapshotters that loaded; a handful at most.
    for p in plugins.iter().filter(|p| p.init_err.is_none()).take(16) {
        let req = in_namespace(
            StatSnapshotRequest {
                snapshotter: p.id.clone(),
                key: key.to_owned(),
            },
            namespace,
        );
        match client.stat(req).await {
            Ok(r) => {
                if let Some(info) = r.into_inner().info {
                    return Ok(Some((p.id.clone(), info.parent)));
                }
            }
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(s) => {
                return Err(ContainerdError::from_status(
                    format!("cannot read snapshot {key} of snapshotter {}", p.id),
                    &s,
                ))
            }
        }
    }
    Ok(None)
}

/// The blob `digest` from containerd's content store, at most `limit` bytes.
pub(crate) async fn read_content(
    channel: &Channel,
    namespace: &str,
    digest: &str,
    limit: usize,
) -> Result<Vec<u8>, ContainerdError> {
    use containerd_client::services::v1::content_client::ContentClient;
    use containerd_client::services::v1::ReadContentRequest;
    let what = || format!("cannot read content {digest}");
    let mut stream = ContentClient::new(channel.clone())
        .read(in_namespace(
            ReadContentRequest {
                digest: digest.to_owned(),
                offset: 0,
                size: 0,
            },
            namespace,
        ))
        .await
        .map_err(|s| ContainerdError::from_status(what(), &s))?
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|s| ContainerdError::from_status(what(), &s))?
    {
        if out.len() + chunk.data.len() > limit {
            return Err(ContainerdError::Failed {
                what: what(),
                detail: format!("over {limit} bytes"),
            });
        }
        out.extend_from_slice(&chunk.data);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(url: &str, value: Vec<u8>) -> prost_types::Any {
        prost_types::Any {
            type_url: url.to_owned(),
            value,
        }
    }

    // The real-component test (tests/watcher.rs) runs containerd; this pins the decoding
    // rules for the URL spellings containerd versions and other publishers use.
    #[test]
    fn decodes_type_urls_with_and_without_slash() {
        let create = ImageCreate {
            name: "docker.io/library/alpine:3.20".to_owned(),
            ..ImageCreate::default()
        }
        .encode_to_vec();
        for url in [
            "containerd.services.images.v1.ImageCreate",
            "containerd.events.ImageCreate",
            "/containerd.events.ImageCreate",
            "types.googleapis.com/containerd.events.ImageCreate",
        ] {
            assert_eq!(
                decode(&any(url, create.clone())),
                Some(ImageEvent::Create(
                    "docker.io/library/alpine:3.20".to_owned()
                )),
                "{url}"
            );
        }
        let update = ImageUpdate {
            name: "x".to_owned(),
            ..ImageUpdate::default()
        }
        .encode_to_vec();
        assert_eq!(
            decode(&any("containerd.events.ImageUpdate", update)),
            Some(ImageEvent::Update("x".to_owned()))
        );
        assert_eq!(decode(&any("containerd.events.ImageDelete", vec![])), None);
        assert_eq!(decode(&any("containerd.events.TaskCreate", vec![])), None);
        assert_eq!(decode(&any("other.ImageCreate", vec![])), None);
        assert_eq!(
            decode(&any("containerd.events.ImageCreate", vec![0xff, 0xff])),
            None,
            "garbage is ignored, not a panic"
        );
    }

    /// What the watcher does with a failure depends on its kind: a missing record is
    /// "already gone", an unavailable containerd a reconnect, anything else a reported
    /// failure to enforce.
    #[test]
    fn statuses_map_to_not_found_unavailable_and_failed() {
        let kind = |code| match ContainerdError::from_status("x", &tonic::Status::new(code, "m")) {
            ContainerdError::NotFound { .. } => "not found",
            ContainerdError::Unavailable { .. } => "unavailable",
            ContainerdError::Failed { .. } => "failed",
        };
        assert_eq!(kind(tonic::Code::NotFound), "not found");
        assert_eq!(kind(tonic::Code::Unavailable), "unavailable");
        assert_eq!(kind(tonic::Code::DeadlineExceeded), "unavailable");
        assert_eq!(kind(tonic::Code::PermissionDenied), "failed");
        assert_eq!(kind(tonic::Code::FailedPrecondition), "failed");
        let e =
            ContainerdError::from_status("cannot list leases", &tonic::Status::internal("boom"));
        assert_eq!(e.to_string(), "cannot list leases: boom");
    }

    #[test]
    fn alias_names_are_cri_ids_only() {
        assert!(is_alias(&format!("sha256:{}", "a".repeat(64))));
        assert!(!is_alias("sha256:abc"));
        assert!(!is_alias(&format!("docker.io/x@sha256:{}", "a".repeat(64))));
        assert!(valid_digest(&format!("sha256:{}", "0".repeat(64))));
        assert!(!valid_digest(&format!("sha256:{}\"", "0".repeat(63))));
    }
}
