//! pullguardd: answers "may this image be pulled?" for containerd and operators.
//!
//! Pieces: the policy in force with hot reload ([`reload`]), trust data fetched from
//! notary-servers and cached (`notary_client`, [`engine`]), verdicts from trust-core, durable
//! events ([`events`]) with non-blocking sinks ([`sinks`]), and the gRPC API on a unix
//! socket ([`server`]). [`run`] ties them together.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::path::Path;
use std::sync::Arc;

pub mod engine;
pub mod events;
pub mod kube;
pub mod kube_events;
pub mod metrics;
pub mod nri;
pub mod offline;
pub mod otlp;
pub mod reload;
pub mod server;
pub mod sigstore_root;
pub mod sinks;
pub mod watcher;

/// The gRPC API (generated, in its own crate so that clients stay small).
pub use api;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The policy file is bad: exit 64. Every problem, one per entry.
    #[error("{}", .0.join("; "))]
    Config(Vec<String>),
    /// A directory, file or socket could not be set up.
    #[error("{what}")]
    Setup {
        /// What failed.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The server failed.
    #[error("the gRPC server failed")]
    Serve(#[source] tonic::transport::Error),
}

pub use api::error_chain;

/// How long open connections get after SIGTERM.
const SHUTDOWN_GRACE_SECS: u64 = 3;

/// How long the start waits for connections to trust servers and registries to open
/// before it listens.
const WARM_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// Loads and prepares the policy at `path` as generation 1 (no side effects).
pub fn check_config(path: &Path) -> Result<engine::Loaded, StartError> {
    let config = |e: policy::PolicyError| StartError::Config(e.each().collect());
    let text = policy::Policy::read(path).map_err(config)?;
    engine::check_policy_file(path).map_err(|e| StartError::Config(vec![e]))?;
    let policy = policy::Policy::parse(path, &text).map_err(config)?;
    let mut loaded = engine::Loaded::prepare(policy, 1, path).map_err(StartError::Config)?;
    loaded.set_text(&text);
    Ok(loaded)
}

/// How the daemon starts, beyond its configuration file.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Take the socket over from a running pullguardd instead of refusing to start
    /// ([`server::bind`]): a rolling upgrade with both running for a moment.
    pub take_over: bool,
}

/// Runs the daemon until `shutdown` completes.
pub async fn run(
    config: &Path,
    options: RunOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    // First of all: a SIGHUP (`systemctl reload`) before a stream for it exists would
    // take its default action and kill the daemon while it starts.
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let loaded = check_config(config)?;
    let settings = loaded.policy.daemon.clone();
    let setup = |what: String| move |source| StartError::Setup { what, source };
    let state = key_store::StateStore::open(&settings.state_dir)
        .map_err(|e| StartError::Config(vec![format!("state_dir: {e}")]))?;
    let events = Arc::new(
        events::EventLog::open(
            &settings.events_file,
            settings.events_max_bytes,
            settings.events_keep,
        )
        .map_err(setup(format!(
            "cannot open the events file {}",
            settings.events_file.display()
        )))?,
    );
    let engine = Arc::new(engine::Engine::new(loaded, state, events));
    let warming = engine.warm_connections();
    if settings.stdout_events {
        sinks::stdout(engine.clone());
    }
    if let Some(target) = settings.syslog.clone() {
        sinks::syslog(engine.clone(), target);
    }
    if settings.kubernetes_events {
        kube_events::spawn(engine.clone(), settings.kubernetes_api.clone());
    }
    if let Some(endpoint) = &settings.otlp {
        otlp::spawn(engine.clone(), endpoint.clone());
    }
    if let Some(setting) = &settings.metrics {
        let addr = metrics::listen_address(setting);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(setup(format!("cannot listen for metrics on {addr}")))?;
        tokio::spawn(metrics::serve(engine.clone(), listener));
    }
    reload::start(engine.clone(), config.to_path_buf(), hup).map_err(|e| StartError::Setup {
        what: format!("cannot watch {}", config.display()),
        source: e,
    })?;
    if let Some(socket) = &settings.containerd_socket {
        if settings.watch_images {
            watcher::spawn(engine.clone(), socket.clone());
        }
        if let Some(nri_socket) = &settings.nri_socket {
            nri::spawn(engine.clone(), nri_socket.clone(), socket.clone());
        }
    }
    // The socket appears once the connections are open (or WARM_WAIT has passed): a
    // pull arriving first would otherwise wait for their TLS handshakes beside its
    // own work (on a 2-core node, about 10 ms after the start). A server that does not
    // answer delays the start by WARM_WAIT at most.
    let _ = tokio::time::timeout(WARM_WAIT, async {
        for task in warming {
            let _ = task.await;
        }
    })
    .await;
    let listener = server::bind(&settings.socket, options.take_over).map_err(setup(format!(
        "cannot listen on {}",
        settings.socket.display()
    )))?;
    if let Err(e) = server::grant_group(&settings.allowed_gids) {
        tracing::warn!(
            "cannot give {} to group {:?} (allowed_gids): {e}; its members cannot reach the socket",
            settings.socket.display(),
            settings.allowed_gids.first()
        );
    }
    let mut started = format!(
        "pullguardd {} listening on {}",
        env!("CARGO_PKG_VERSION"),
        settings.socket.display()
    );
    // The first thing an operator on a new node reads: what is not enforced yet.
    if let Some(notice) = engine.loaded().policy.audit_notice() {
        tracing::warn!("{notice}");
        started.push_str("; ");
        started.push_str(&notice);
    }
    let warnings = engine.loaded().policy.lint_summary();
    for warning in warnings
        .into_iter()
        .chain(engine.loaded().unusable_summary())
    {
        tracing::warn!("{warning}");
        started.push_str("; ");
        started.push_str(&warning);
    }
    let start = engine
        .events
        .new_event(api::codes::EventKind::DaemonStarted, 1, started);
    let _ = engine.emit(start, false).await;
    tracing::info!(socket = %settings.socket.display(), "pullguardd ready");
    let service = Arc::new(server::Service {
        engine: engine.clone(),
    });
    let incoming = server::incoming(listener, service.clone());
    let service = api::pullguard_server::PullguardServer::from_arc(service)
        // Above Linux's 128 KiB limit on one argument: any name containerd can pass the
        // verifier decodes, and is then refused with a verdict rather than a transport error.
        .max_decoding_message_size(256 * 1024);
    // Graceful shutdown waits for open connections, and a WatchEvents stream never ends
    // by itself: after the signal, connections get a few seconds, then the daemon exits.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut graceful_rx = stop_rx.clone();
    let graceful = async move {
        let _ = graceful_rx.wait_for(|stop| *stop).await;
    };
    let mut deadline_rx = stop_rx;
    let deadline = async move {
        let _ = deadline_rx.wait_for(|stop| *stop).await;
        tokio::time::sleep(std::time::Duration::from_secs(SHUTDOWN_GRACE_SECS)).await;
    };
    let serve = tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, graceful);
    tokio::select! {
        served = serve => served.map_err(StartError::Serve)?,
        () = deadline => tracing::warn!(seconds = SHUTDOWN_GRACE_SECS, "connections still open at shutdown; closing them"),
    }
    server::unbind();
    Ok(())
}
