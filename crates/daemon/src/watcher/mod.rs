//! The containerd event watcher: enforcement for pulls the bindir verifier never sees
//! (containerd 1.x, `ctr image pull --local`, `ctr image import`, CRI's local pull path).
//!
//! It subscribes to `/images/create` and `/images/update` in every namespace and asks the
//! verdict engine about each image's target digest. A rejection under an `enforce` rule
//! removes the image record (and leases holding its content) at once; under `audit` it is
//! only recorded. Images already present are swept on connect and after every policy
//! reload. This detects and removes; it cannot stop a pull in flight (docs/enforcement.md).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use containerd_client::services::v1::Image;
use containerd_client::types::Envelope;
use futures_util::StreamExt as _;
use tokio::sync::Semaphore;
use tonic::transport::Channel;

use api::codes::{EventKind, ReasonCode};

use crate::engine::{Ask, Engine, Verdict};

mod containerd;

use containerd::{
    connect, delete_image, is_alias, list_images, namespaces, next_event, release_leases,
    same_target, subscribe_images, valid_digest,
};
pub use containerd::{decode, list_all, ContainerdError, ImageEvent};
// The NRI gate reads image records through the same adapter.
pub(crate) use containerd::{
    connect as connect_containerd, get_image, read_content, snapshot_parent,
};

/// Recorded as the source of the watcher's verdicts.
pub const SOURCE: &str = "containerd-watcher";
/// Images checked at once (each may fetch trust data).
const PARALLEL: usize = 8;
/// Largest message accepted from containerd (image lists of big nodes included).
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// Time for a subscription request to reach containerd before the sweep lists images.
const SUBSCRIBE_SETTLE: Duration = Duration::from_millis(100);
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// CRI writes an image's name, digest and ID records in one burst; an ID record checked
/// before its named sibling exists waits this long before it is judged on its own.
const ALIAS_GRACE: Duration = Duration::from_secs(3);

/// What an image event or a sweep found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Event,
    Sweep,
    /// A kept image's turn to be checked again.
    Recheck,
}

/// Images a sweep kept because they could not be verified then, by namespace and name:
/// checked again every [`RECHECK`] until a verdict is reached.
type Kept = Arc<std::sync::Mutex<std::collections::BTreeSet<(String, String)>>>;

/// How often kept images are checked again. Without it an image kept in an outage (or
/// by a registry that answers its own signature lookups with 503) stayed until the next
/// reload or reconnect, and on a node without the NRI gate its containers ran.
const RECHECK: Duration = Duration::from_secs(30);

/// Starts the watcher on `socket`; it runs (and reconnects) until the process exits.
pub fn spawn(engine: Arc<Engine>, socket: PathBuf) {
    tokio::spawn(async move { run(engine, socket).await });
}

/// An event about the watcher itself.
async fn note(engine: &Engine, kind: EventKind, message: String, durable: bool) {
    engine.note(kind, SOURCE, message, durable).await;
}

async fn run(engine: Arc<Engine>, socket: PathBuf) {
    let mut backoff = BACKOFF_FIRST;
    let mut was_connected = false;
    let mut reported_down = false;
    loop {
        engine
            .watcher_state
            .set(format!("connecting to {}", socket.display()));
        let started = Instant::now();
        let Err(cause) = session(&engine, &socket, &mut was_connected).await;
        if started.elapsed() > BACKOFF_MAX {
            backoff = BACKOFF_FIRST;
        }
        let state = format!(
            "disconnected from {}: {cause}; retrying in {:.1} s",
            socket.display(),
            backoff.as_secs_f64()
        );
        tracing::warn!(socket = %socket.display(), %cause, "containerd watcher disconnected");
        engine.watcher_state.set(state.clone());
        // One event per outage, not one per retry: pulls through paths the verifier does
        // not see go unchecked until the sweep that follows the reconnect.
        if was_connected || !reported_down {
            note(
                &engine,
                EventKind::WatcherDisconnected,
                format!("containerd watcher {state}; images pulled meanwhile are checked by the sweep on reconnect"),
                true,
            )
            .await;
            reported_down = true;
        }
        was_connected = false;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One connection: subscribe, sweep, then follow events and reloads until it breaks.
async fn session(
    engine: &Arc<Engine>,
    socket: &Path,
    was_connected: &mut bool,
) -> Result<std::convert::Infallible, ContainerdError> {
    let channel = connect(socket).await?;
    // containerd sends a subscription's response headers only with its first event, so
    // awaiting `subscribe` would hold the sweep until the next pull. The subscription runs
    // in its own task and feeds a queue; the sweep starts once the request is on its way,
    // and events that arrive during the sweep wait in the queue.
    let (tx, mut queue) = tokio::sync::mpsc::channel::<Result<Envelope, ContainerdError>>(1024);
    let events = channel.clone();
    let subscription = tokio::spawn(async move {
        let end = match subscribe_images(&events).await {
            Err(e) => e,
            Ok(mut stream) => loop {
                match next_event(&mut stream).await {
                    Ok(Some(envelope)) => {
                        if tx.send(Ok(envelope)).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => {
                        break ContainerdError::unavailable("event stream", "containerd closed it")
                    }
                    Err(e) => break e,
                }
            },
        };
        let _ = tx.send(Err(end)).await;
    });
    // Stops the subscription when this session ends, whichever way.
    struct Abort(tokio::task::JoinHandle<()>);
    impl Drop for Abort {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _subscription = Abort(subscription);
    tokio::time::sleep(SUBSCRIBE_SETTLE).await;
    *was_connected = true;
    engine
        .watcher_state
        .set(format!("watching {}", socket.display()));
    note(
        engine,
        EventKind::WatcherConnected,
        format!("watching containerd at {}", socket.display()),
        false,
    )
    .await;
    let limit = Arc::new(Semaphore::new(PARALLEL));
    let kept = Kept::default();
    let mut installs = engine.installs();
    installs.mark_unchanged();
    // Sweeps run beside event handling, with permits of their own: a sweep held up by a
    // slow registry or trust server (each image may wait out its timeout) must not hold
    // up the judging of a fresh pull. One at a time; a reload during one sweeps again
    // after it (the one running judged by an older policy).
    let sweep_limit = Arc::new(Semaphore::new(PARALLEL));
    let (swept_tx, mut swept) = tokio::sync::mpsc::channel::<Result<(), ContainerdError>>(1);
    let start_sweep = |trigger: String| {
        let (engine, channel, limit, kept, tx) = (
            engine.clone(),
            channel.clone(),
            sweep_limit.clone(),
            kept.clone(),
            swept_tx.clone(),
        );
        Abort(tokio::spawn(async move {
            let _ = tx
                .send(sweep(&engine, &channel, &limit, &kept, &trigger).await)
                .await;
        }))
    };
    let mut sweeping = Some(start_sweep("connected".to_owned()));
    let mut sweep_again: Option<String> = None;
    let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK, RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            item = queue.recv() => {
                let envelope = item.unwrap_or_else(|| {
                    Err(ContainerdError::unavailable("event subscription", "it stopped"))
                })?;
                on_envelope(engine, &channel, &limit, &kept, envelope);
            }
            _ = recheck.tick() => {
                let due = std::mem::take(&mut *kept.lock().unwrap_or_else(|p| p.into_inner()));
                for (namespace, name) in due {
                    spawn_check(engine, &channel, &limit, &kept, namespace, name, Why::Recheck);
                }
            }
            Some(done) = swept.recv() => {
                sweeping = None;
                done?;
                if let Some(trigger) = sweep_again.take() {
                    sweeping = Some(start_sweep(trigger));
                }
            }
            changed = installs.changed() => {
                if changed.is_err() {
                    // The daemon is shutting down; the watcher task goes with it.
                    return Err(ContainerdError::unavailable("watching", "pullguardd is stopping"));
                }
                let trigger = format!("policy generation {}", *installs.borrow_and_update());
                if sweeping.is_some() {
                    sweep_again = Some(trigger);
                } else {
                    sweeping = Some(start_sweep(trigger));
                }
            }
        }
    }
}

fn on_envelope(
    engine: &Arc<Engine>,
    channel: &Channel,
    limit: &Arc<Semaphore>,
    kept: &Kept,
    env: Envelope,
) {
    let Some(any) = env.event.as_ref() else {
        return;
    };
    let Some(event) = decode(any) else {
        tracing::debug!(topic = %env.topic, type_url = %any.type_url, "ignored containerd event");
        return;
    };
    let name = match event {
        ImageEvent::Create(n) | ImageEvent::Update(n) => n,
    };
    spawn_check(
        engine,
        channel,
        limit,
        kept,
        env.namespace,
        name,
        Why::Event,
    );
}

/// Checks one image in a task of its own, under a permit of `limit`; a failure to check
/// is reported.
fn spawn_check(
    engine: &Arc<Engine>,
    channel: &Channel,
    limit: &Arc<Semaphore>,
    kept: &Kept,
    namespace: String,
    name: String,
    why: Why,
) {
    let (engine, channel, limit, kept) =
        (engine.clone(), channel.clone(), limit.clone(), kept.clone());
    tokio::spawn(async move {
        // CRI writes an image's name, digest and ID records in one burst: an ID record
        // seen as an event waits for its named sibling, without a permit, so that a
        // burst of pulls does not hold every check up for the grace.
        if matches!(why, Why::Event) && is_alias(&name) {
            tokio::time::sleep(ALIAS_GRACE).await;
        }
        let Ok(_permit) = limit.acquire_owned().await else {
            return;
        };
        if let Err(e) = check_named(&engine, &channel, &kept, &namespace, &name, None, why).await {
            report_failure(&engine, &namespace, &name, &e).await;
        }
    });
}

/// Checks every image in every namespace.
async fn sweep(
    engine: &Arc<Engine>,
    channel: &Channel,
    limit: &Arc<Semaphore>,
    kept: &Kept,
    trigger: &str,
) -> Result<(), ContainerdError> {
    let namespaces = namespaces(channel).await?;
    let mut checked = 0usize;
    let removed_before = engine.counters.images_removed.load(Ordering::Relaxed);
    for ns in namespaces {
        let images = list_images(channel, &ns, Vec::new()).await?;
        checked += images.len();
        let tasks = images.into_iter().map(|image| {
            let (engine, channel, limit, kept, ns) = (
                engine.clone(),
                channel.clone(),
                limit.clone(),
                kept.clone(),
                ns.clone(),
            );
            async move {
                let Ok(_permit) = limit.acquire_owned().await else {
                    return;
                };
                let name = image.name.clone();
                if let Err(e) = check_named(
                    &engine,
                    &channel,
                    &kept,
                    &ns,
                    &name,
                    Some(image),
                    Why::Sweep,
                )
                .await
                {
                    report_failure(&engine, &ns, &name, &e).await;
                }
            }
        });
        futures_util::stream::iter(tasks)
            .buffer_unordered(PARALLEL)
            .collect::<Vec<()>>()
            .await;
    }
    let removed = engine
        .counters
        .images_removed
        .load(Ordering::Relaxed)
        .saturating_sub(removed_before);
    note(
        engine,
        EventKind::WatcherSwept,
        format!(
            "checked {} in containerd ({trigger}); removed {removed}",
            api::plural(checked as u64, "image")
        ),
        false,
    )
    .await;
    Ok(())
}

/// Verifies one image record and enforces the verdict.
async fn check_named(
    engine: &Arc<Engine>,
    channel: &Channel,
    kept: &Kept,
    namespace: &str,
    name: &str,
    image: Option<Image>,
    why: Why,
) -> Result<(), ContainerdError> {
    let image = match image {
        Some(i) => i,
        // Gone meanwhile: nothing to check.
        None => match get_image(channel, namespace, name).await? {
            Some(i) => i,
            None => return Ok(()),
        },
    };
    let digest = image
        .target
        .as_ref()
        .map(|t| t.digest.clone())
        .unwrap_or_default();
    engine
        .counters
        .images_checked
        .fetch_add(1, Ordering::Relaxed);
    if is_alias(name) && valid_digest(&digest) {
        let siblings = same_target(channel, namespace, &digest).await?;
        if siblings.iter().any(|i| !is_alias(&i.name)) {
            // Judged through its named siblings; removing a rejected one removes it too.
            return Ok(());
        }
        // An ID record no named record vouches for: nothing names a repository whose
        // trust data could vouch for it (CRI can still start containers by ID), so it
        // is refused as such, never judged as a made-up name.
    }
    let ask = Ask {
        source: SOURCE,
        dry_run: false,
        namespace: Some(namespace),
        reuse_recent: true,
        container: None,
    };
    // The record's own digest is always what is checked (an empty or non-sha256 one is a
    // rejection), never a tag resolved afresh from trust data.
    let verdict = engine.verify(name, Some(&digest), &ask).await;
    if verdict.allowed {
        return Ok(());
    }
    if why != Why::Event && verdict.reason.is_some_and(ReasonCode::is_transient) {
        kept.lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((namespace.to_owned(), name.to_owned()));
        // Said once, on disk: an image the policy may reject stays on the node.
        if why == Why::Sweep {
            record(engine, EventKind::ImageKept, namespace, name, &digest, &verdict, format!(
                "kept {name} (namespace {namespace}) although it could not be verified now: {}; it is checked again every {}s until it can be",
                verdict.message,
                RECHECK.as_secs()
            ), true).await;
        }
        return Ok(());
    }
    remove(engine, channel, namespace, name, &digest, &verdict).await
}

/// Removes a rejected image, the aliases that only it named, and leases on its content.
async fn remove(
    engine: &Arc<Engine>,
    channel: &Channel,
    namespace: &str,
    name: &str,
    digest: &str,
    verdict: &Verdict,
) -> Result<(), ContainerdError> {
    // containerd 2.x deletes only if the name still points at what was judged (a re-tag
    // in between is kept).
    match delete_image(channel, namespace, name, digest, true).await {
        Ok(()) => {}
        // Already gone (removed with a sibling, or by someone else): nothing was removed
        // here, so nothing is counted or recorded.
        Err(ContainerdError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e),
    }
    engine
        .counters
        .images_removed
        .fetch_add(1, Ordering::Relaxed);
    let mut also = Vec::new();
    if valid_digest(digest) {
        let siblings = same_target(channel, namespace, digest).await?;
        if siblings.iter().all(|i| is_alias(&i.name)) {
            for alias in siblings {
                match delete_image(channel, namespace, &alias.name, digest, false).await {
                    Ok(()) => also.push(alias.name),
                    Err(ContainerdError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        also.extend(release_leases(channel, namespace, digest).await?);
    }
    let extra = if also.is_empty() {
        String::new()
    } else {
        format!(" (also removed: {})", also.join(", "))
    };
    record(
        engine,
        EventKind::ImageRemoved,
        namespace,
        name,
        digest,
        verdict,
        format!(
            "removed {name} from containerd (namespace {namespace}){extra}: {}; to fix: {}",
            verdict.message,
            verdict.reason.map(ReasonCode::remedy).unwrap_or_default()
        ),
        true,
    )
    .await;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn record(
    engine: &Engine,
    kind: EventKind,
    namespace: &str,
    name: &str,
    digest: &str,
    verdict: &Verdict,
    message: String,
    durable: bool,
) {
    let mut ev = engine.events.new_event(kind, verdict.generation, message);
    ev.image = Some(name.to_owned());
    ev.digest = (!digest.is_empty()).then(|| digest.to_owned());
    ev.gun = (!verdict.gun.is_empty()).then(|| verdict.gun.clone());
    ev.rule = (!verdict.rule.is_empty()).then(|| verdict.rule.clone());
    ev.mode = Some(verdict.mode);
    ev.reason = verdict.reason;
    ev.source = Some(SOURCE.to_owned());
    ev.namespace = Some(namespace.to_owned());
    let _ = engine.emit(ev, durable).await;
}

/// A check or removal that could not be carried out is an event and a status error: the
/// operator must know an image the policy rejects may still be on the node.
async fn report_failure(engine: &Engine, namespace: &str, name: &str, cause: &ContainerdError) {
    let message = format!(
        "could not enforce the policy on {name} (containerd namespace {namespace}): {cause}; remove it by hand (`ctr -n {namespace} images rm {name}`) if it is rejected, and check containerd"
    );
    tracing::error!(%namespace, image = %name, %cause, "watcher could not enforce");
    engine.note_error(&message);
    let mut ev = engine.events.new_event(
        EventKind::ImageRemoveFailed,
        engine.loaded().generation,
        message,
    );
    ev.image = Some(name.to_owned());
    ev.source = Some(SOURCE.to_owned());
    ev.namespace = Some(namespace.to_owned());
    ev.reason = Some(ReasonCode::WatcherFailed);
    let _ = engine.emit(ev, true).await;
}
