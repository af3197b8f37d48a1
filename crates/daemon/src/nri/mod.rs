//! The NRI gate: pullguardd as a plugin of containerd's Node Resource Interface, asked
//! before every container CRI creates. Whatever brought the image (a pull the verifier
//! judged, an import, a tag, an image that arrived while pullguardd was down), a
//! container is created only from an image the policy allows (audit: created and
//! recorded).
//!
//! The image judged is the one containerd's CRI names in the container's
//! `io.kubernetes.cri.image-name` annotation, with the digest of containerd's own image
//! record of that name in the `k8s.io` namespace: what is on the node, never a tag
//! resolved afresh. containerd waits for an answer only `plugin_request_timeout`
//! (2 s by default) and then goes on without the plugin, so a verdict not ready by then
//! is answered with a refusal (`verdict_timeout`), and worked out meanwhile for the
//! kubelet's next try.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use api::codes::{EventKind, ReasonCode};

use crate::engine::{Ask, ContainerCtx, Engine, Verdict};
mod images;

use images::Images;

/// Recorded as the source of the gate's verdicts.
pub const SOURCE: &str = "containerd-nri";
/// The plugin's name in containerd: what `required_plugins` lists.
pub const PLUGIN_NAME: &str = "pullguard";
/// Asked first: a refused container costs no other plugin any work.
const PLUGIN_INDEX: &str = "00";
/// CRI's containerd namespace.
const CRI_NAMESPACE: &str = "k8s.io";
// Connecting to a unix socket is cheap, and while the plugin is not registered
// containerd either refuses containers (required_plugins) or creates them unchecked: try
// often.
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Share of containerd's deadline the verdict may take; the rest carries the answer.
const BUDGET_SHARE: (u32, u32) = (3, 4);

/// Starts the gate; it runs (and reconnects) until the process exits.
pub fn spawn(engine: Arc<Engine>, nri_socket: PathBuf, containerd_socket: PathBuf) {
    tokio::spawn(run(engine, nri_socket, containerd_socket));
}

async fn note(engine: &Engine, kind: EventKind, message: String) {
    engine.note(kind, SOURCE, message, false).await;
}

async fn run(engine: Arc<Engine>, nri_socket: PathBuf, containerd_socket: PathBuf) {
    let plugin = nri::Plugin {
        name: PLUGIN_NAME.to_owned(),
        index: PLUGIN_INDEX.to_owned(),
    };
    let gate = Arc::new(Gate {
        engine: engine.clone(),
        images: Arc::new(Images::new(containerd_socket)),
    });
    let mut backoff = BACKOFF_FIRST;
    // One `nri.disconnected` per outage (and one if the first attempt fails).
    let mut reported = false;
    loop {
        engine
            .nri_state
            .set(format!("connecting to {}", nri_socket.display()));
        let started = std::time::Instant::now();
        let why = nri::serve(&nri_socket, &plugin, gate.clone()).await;
        let was_registered = engine.nri_state.get().starts_with("registered");
        tracing::warn!(error = %why, "NRI connection ended");
        engine.nri_state.set(format!(
                "not registered (containers are created without asking pullguard unless containerd's NRI validator requires it): {why}; retrying in {:.1}s",
                backoff.as_secs_f64()
            ),
        );
        if was_registered || !reported {
            note(&engine, EventKind::NriDisconnected, format!(
                "not registered with containerd's NRI at {}: {why}; reconnecting with backoff (containers created meanwhile are not checked unless containerd's NRI default validator lists {PLUGIN_NAME} in required_plugins, which refuses them instead)",
                nri_socket.display()
            )).await;
            reported = true;
        }
        if was_registered && started.elapsed() > BACKOFF_MAX {
            backoff = BACKOFF_FIRST;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Answers containerd's calls with the engine's verdicts.
struct Gate {
    engine: Arc<Engine>,
    images: Arc<Images>,
}

impl nri::Handler for Gate {
    fn configured(&self, runtime: &nri::Runtime) {
        tracing::info!(
            runtime = %runtime.name,
            version = %runtime.version,
            nri = %runtime.nri_version,
            request_timeout_ms = runtime.request_timeout.as_millis(),
            "NRI plugin configured"
        );
        self.engine.nri_state.set(format!(
            "configured by {} {} (request timeout {} ms)",
            runtime.name,
            runtime.version,
            runtime.request_timeout.as_millis()
        ));
    }

    fn synchronized(&self, pods: usize, containers: usize) {
        let engine = self.engine.clone();
        tokio::spawn(async move {
            let previous = engine.nri_state.get();
            let detail = previous.strip_prefix("configured by ").unwrap_or(&previous);
            engine.nri_state.set(format!("registered with {detail}"));
            note(&engine, EventKind::NriRegistered, format!(
                "registered with containerd's NRI as {PLUGIN_INDEX}-{PLUGIN_NAME} ({pods} pods, {containers} containers present); every container created from now on is checked"
            )).await;
        });
    }

    async fn create_container(
        &self,
        request: nri::api::CreateContainerRequest,
        budget: Duration,
    ) -> Result<(), String> {
        let started = std::time::Instant::now();
        // containerd creates the container anyway when the answer comes later than its
        // deadline: everything (the record read, the verdict, the event) counts against
        // this share of it.
        let budget = budget * BUDGET_SHARE.0 / BUDGET_SHARE.1;
        let pod = request.pod.unwrap_or_default();
        let container = request.container.unwrap_or_default();
        // What a CRI client wrote goes into every event of this creation: bounded (a
        // Kubernetes name is at most 253 bytes), so that no event grows past what a
        // sink ships.
        let bounded = |s: String| api::capped(&s, MAX_EVENT_NAME);
        let ctx = ContainerCtx {
            pod: bounded(pod.name),
            pod_namespace: bounded(pod.namespace),
            pod_uid: bounded(pod.uid),
            container: bounded(container.name),
        };
        let image = container
            .annotations
            .get(nri::IMAGE_NAME_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        if image.len() > crate::server::MAX_IMAGE {
            return self.refuse_now(&ctx, &api::capped(&image, 200), ReasonCode::InvalidReference, format!(
                "the image name ({} bytes) is over the limit ({} bytes); nothing that long can be checked",
                image.len(),
                crate::server::MAX_IMAGE
            ));
        }
        let (engine, images, name, c) = (
            self.engine.clone(),
            self.images.clone(),
            image.clone(),
            ctx.clone(),
        );
        // In a task of its own, so that a verdict that misses the deadline is still worked
        // out (and cached) for the next try.
        let container_id = container.id.clone();
        let cri_image = container.image.clone();
        let work = tokio::spawn(async move {
            let (digest, runs) = match images.remembered(&name, cri_image.as_ref()) {
                // containerd named the image CRI runs, and the name was read live to
                // point at it moments ago with every view agreeing: no read.
                Some(d) => (Ok(d), Ok(())),
                None => {
                    // The image record and the container's root filesystem, asked
                    // together.
                    let (digest, root) =
                        tokio::join!(images.digest_of(&name), images.root_of(&container_id));
                    // What the container will run is the image CRI resolved for it (its
                    // config and manifest, where containerd says) and the root
                    // filesystem CRI prepared for it: the image judged must be that one,
                    // or the name the gate was given (an annotation a CRI client can set,
                    // a record CRI's own cache no longer agrees with) is not what runs.
                    let runs = match &digest {
                        Ok(d) => images.runs(d, cri_image.as_ref(), root).await,
                        Err(_) => Ok(()),
                    };
                    if let (Ok(d), Ok(())) = (&digest, &runs) {
                        images.remember(&name, d, cri_image.as_ref());
                    }
                    (digest, runs)
                }
            };
            let lookup_us = started.elapsed().as_micros();
            let v = match (digest, runs) {
                (Ok(d), Ok(())) => engine.verify(&name, Some(&d), &ask(&c)).await,
                (Ok(_), Err((reason, why))) | (Err(why), Err((reason, _))) => {
                    engine.refuse(&name, reason, why, &ask(&c)).await
                }
                (Err(why), Ok(())) => {
                    engine
                        .refuse(&name, ReasonCode::ImageUnresolved, why, &ask(&c))
                        .await
                }
            };
            (v, lookup_us)
        });
        let mut lookup_us = None;
        let outcome = match tokio::time::timeout(budget, work).await {
            Ok(Ok((v, took))) => {
                lookup_us = Some(took);
                answer(&ctx, &image, &v)
            }
            Ok(Err(e)) => self.refuse_now(&ctx, &image, ReasonCode::InternalError, format!("the verdict task failed: {e}")),
            Err(_) => self.refuse_now(&ctx, &image, ReasonCode::VerdictTimeout, format!(
                "no verdict for {image} within {} ms, the share of containerd's NRI deadline it may take; it is still being worked out, and the next try gets it",
                budget.as_millis()
            )),
        };
        // What the gate adds to a container's creation (bench/nri reads it).
        tracing::debug!(
            container = %ctx.container,
            allowed = outcome.is_ok(),
            lookup_us,
            gate_us = started.elapsed().as_micros(),
            "NRI CreateContainer answered"
        );
        outcome
    }
}

impl Gate {
    /// A refusal answered at once, its event recorded meanwhile: past the deadline an
    /// answer is worth nothing (containerd creates the container), so a slow events
    /// disk must not hold it.
    fn refuse_now(
        &self,
        ctx: &ContainerCtx,
        image: &str,
        reason: ReasonCode,
        message: String,
    ) -> Result<(), String> {
        let text = refusal(
            ctx,
            image,
            reason,
            &message,
            "-",
            self.engine.loaded().generation,
            "recorded as container.refused",
        );
        let (engine, ctx, image) = (self.engine.clone(), ctx.clone(), image.to_owned());
        tokio::spawn(async move { engine.refuse(&image, reason, message, &ask(&ctx)).await });
        Err(text)
    }
}

fn ask(ctx: &ContainerCtx) -> Ask<'_> {
    Ask {
        source: SOURCE,
        dry_run: false,
        namespace: Some(CRI_NAMESPACE),
        // Every creation gets its own event; the trust data cache keeps it fast.
        reuse_recent: false,
        container: Some(ctx),
    }
}

/// containerd's answer: nothing when allowed (or audited), else the refusal text
/// `crictl create` and the kubelet's pod events show.
fn answer(ctx: &ContainerCtx, asked: &str, v: &Verdict) -> Result<(), String> {
    if v.allowed {
        return Ok(());
    }
    let image = if v.image.is_empty() { asked } else { &v.image };
    let rule = if v.rule.is_empty() { "-" } else { &v.rule };
    let event = format!("event {}", v.event_id);
    Err(refusal(
        ctx,
        image,
        v.reason.unwrap_or(ReasonCode::InternalError),
        &v.message,
        rule,
        v.generation,
        &event,
    ))
}

/// Longest image name quoted in a refusal (what the CRI client wrote can be longer).
const MAX_QUOTED_IMAGE: usize = 300;
/// Longest verdict message quoted (it may quote a registry's or a signature's text).
const MAX_QUOTED_MESSAGE: usize = 700;
/// Longest pod, namespace, pod UID or container name kept for events.
const MAX_EVENT_NAME: usize = 256;
/// Longest pod, namespace or container name quoted.
const MAX_QUOTED_NAME: usize = 100;

/// The refusal containerd hands to the CRI caller. Every piece that came from outside
/// (the image name as the client wrote it, pod and container names, a message quoting
/// a registry or a certificate) is capped and cleaned, so the answer always fits what
/// containerd reads (the nri crate bounds it again) and cannot forge lines in a log.
fn refusal(
    ctx: &ContainerCtx,
    image: &str,
    reason: ReasonCode,
    message: &str,
    rule: &str,
    generation: u64,
    event: &str,
) -> String {
    let name = |s: &str| api::capped(s, MAX_QUOTED_NAME);
    format!(
        "pullguard: refused container {} of pod {}/{}: image {}: {} [{reason}]; to fix: {} (rule {}, policy gen {generation}, {event})",
        name(&ctx.container),
        name(&ctx.pod_namespace),
        name(&ctx.pod),
        api::capped(image, MAX_QUOTED_IMAGE),
        api::capped(message, MAX_QUOTED_MESSAGE),
        reason.remedy(),
        name(rule),
    )
}

#[cfg(test)]
mod tests {
    //! The gate's own refusals that need no containerd to happen (the real gate under a
    //! real containerd: tests/nri.rs).
    use super::images::chain_id;
    use super::*;
    use nri::Handler as _;

    fn gate(dir: &std::path::Path) -> Gate {
        let file = dir.join("policy.toml");
        std::fs::write(
            &file,
            format!(
                "[daemon]\nsocket = \"{d}/pg.sock\"\nstate_dir = \"{d}/state\"\nkeys_dir = \"{d}/keys\"\nevents_file = \"{d}/events.jsonl\"\ncontainerd_socket = \"\"\n\n[[rule]]\nname = \"any\"\nmatch = \"**\"\nrequire = \"any\"\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let policy = policy::Policy::load(&file).unwrap();
        let state = key_store::StateStore::open(&dir.join("state")).unwrap();
        let events = crate::events::EventLog::open(&dir.join("events.jsonl"), u64::MAX, 0).unwrap();
        let loaded = crate::engine::Loaded::prepare(policy, 1, &file).unwrap();
        Gate {
            engine: Arc::new(Engine::new(loaded, state, Arc::new(events))),
            // Nothing listens here: containerd is "down".
            images: Arc::new(Images::new(dir.join("no-containerd.sock"))),
        }
    }

    fn request(annotations: &[(&str, &str)]) -> nri::api::CreateContainerRequest {
        nri::api::CreateContainerRequest {
            pod: Some(nri::api::PodSandbox {
                name: "web".into(),
                namespace: "shop".into(),
                ..Default::default()
            }),
            container: Some(nri::api::Container {
                name: "app".into(),
                annotations: annotations
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                ..Default::default()
            }),
        }
    }

    fn last_event(dir: &std::path::Path) -> serde_json::Value {
        let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
        serde_json::from_str(text.lines().last().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_container_without_the_image_annotation_is_refused_even_where_anything_goes() {
        let dir = tempfile::tempdir().unwrap();
        let g = gate(dir.path());
        let refused = g
            .create_container(request(&[]), Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(
            refused.starts_with("pullguard: refused container app of pod shop/web")
                && refused.contains("[image_unresolved]"),
            "{refused}"
        );
        let e = last_event(dir.path());
        assert_eq!(e["event"], "container.refused", "{e}");
        assert_eq!(e["reason"], "image_unresolved", "{e}");
        assert_eq!(
            (&e["pod"], &e["container"]),
            (&"web".into(), &"app".into()),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_host_spelled_otherwise_than_the_policy_knows_it_refuses_the_container() {
        // CRI would resolve the record under this spelling; pullguard would read the
        // lower-case one: two records, possibly two contents.
        for image in [
            "Registry.Example.com/app:v1",
            "registry.example.com:443/app:v1",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let g = gate(dir.path());
            let refused = g
                .create_container(
                    request(&[(nri::IMAGE_NAME_ANNOTATION, image)]),
                    Duration::from_secs(2),
                )
                .await
                .unwrap_err();
            assert!(
                refused.contains("[image_unresolved]") && refused.contains("written"),
                "{image}: {refused}"
            );
        }
    }

    #[tokio::test]
    async fn an_image_record_that_cannot_be_read_refuses_the_container() {
        let dir = tempfile::tempdir().unwrap();
        let g = gate(dir.path());
        let refused = g
            .create_container(
                request(&[(nri::IMAGE_NAME_ANNOTATION, "registry.example.com/app:v1")]),
                Duration::from_secs(2),
            )
            .await
            .unwrap_err();
        assert!(
            refused.contains("[image_unresolved]") && refused.contains("containerd"),
            "{refused}"
        );
        assert_eq!(last_event(dir.path())["reason"], "image_unresolved");
    }

    #[tokio::test]
    async fn long_refusal_closes_plugin_a_long_image_name_and_message_give_a_bounded_answer() {
        // The attack: a 2,500-byte image name (and a message quoting it) made an answer
        // containerd could not read; it dropped the plugin and created the container.
        let dir = tempfile::tempdir().unwrap();
        let g = gate(dir.path());
        let image = format!(
            "registry.example.com/{}:v1\n[forged log line]",
            "a".repeat(2_500)
        );
        let refused = g
            .create_container(
                request(&[(nri::IMAGE_NAME_ANNOTATION, &image)]),
                Duration::from_secs(2),
            )
            .await
            .unwrap_err();
        assert!(refused.len() < 2048, "{} bytes", refused.len());
        assert!(refused.contains("[image_unresolved]"), "{refused}");
        assert!(!refused.contains('\n'), "{refused}");
        let ctx = ContainerCtx {
            pod: "p".repeat(5_000),
            pod_namespace: "n".into(),
            pod_uid: String::new(),
            container: "c".into(),
        };
        let text = refusal(
            &ctx,
            &image,
            ReasonCode::IdentityMismatch,
            &"SAN ".repeat(2_000),
            "rule",
            1,
            "event 1",
        );
        assert!(text.len() < 2048, "{} bytes", text.len());
        assert!(
            text.contains("[identity_mismatch]") && text.contains("to fix:"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_padded_image_annotation_gives_a_bounded_event_every_sink_exports() {
        // The attack: a direct CRI client's 600 KiB image annotation (and pod name)
        // went whole into the refusal's event: a 600 KiB line written and synced on
        // every retry, and one the OTLP exporter skips (over 512 KiB), so the refusal
        // never reached the collector.
        let dir = tempfile::tempdir().unwrap();
        let g = gate(dir.path());
        let image = format!("registry.example.com/{}:v1", "a".repeat(600 << 10));
        let mut req = request(&[(nri::IMAGE_NAME_ANNOTATION, &image)]);
        if let Some(p) = req.pod.as_mut() {
            p.name = "p".repeat(600 << 10);
        }
        let refused = g
            .create_container(req, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(refused.contains("[invalid_reference]"), "{refused}");
        // The event is written by a task of its own.
        let mut line = String::new();
        for _ in 0..200 {
            line = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap_or_default();
            if !line.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(line.len() < 8 << 10, "an event of {} bytes", line.len());
        let e = last_event(dir.path());
        assert_eq!(
            (&e["event"], &e["reason"]),
            (&"container.refused".into(), &"invalid_reference".into()),
            "{e}"
        );
        assert!(e["image"]
            .as_str()
            .unwrap()
            .starts_with("registry.example.com/aaa"));
    }

    #[test]
    fn chain_ids_are_computed_as_containerd_names_snapshots() {
        // One layer: its diff ID. Two: sha256 of "first second".
        let a = "sha256:aaaa";
        assert_eq!(chain_id(&[a]), a);
        assert_eq!(
            chain_id(&[a, "sha256:bbbb"]),
            "sha256:2c4d8760379f05d0ad1ed610712309f0114e7345e6e6a351494cff030ffdf197"
        );
        assert_eq!(
            chain_id(&[a, "sha256:bbbb", "sha256:cccc"]),
            "sha256:10f847b3ece58353f298bec20c58125235b631360ad43ac162131980750211ff"
        );
    }
}
