//! `[daemon]`: the settings of pullguardd itself, with their defaults, each checked where
//! it is written.

use std::path::PathBuf;

use super::parse::{
    std_duration, Ctx, RawDaemon, DEFAULT_REGISTRY_CONFIG_PATH, DEFAULT_SIGSTORE_TUF,
};
use super::*;

pub(crate) fn daemon_settings(ctx: &mut Ctx<'_>, d: &RawDaemon) -> DaemonSettings {
    let syslog = d.syslog.as_ref().and_then(|s| {
        let v = s.get_ref();
        if let Some(p) = v.strip_prefix("unix://") {
            Some(SyslogTarget::Unix(PathBuf::from(p)))
        } else if let Some(a) = v.strip_prefix("udp://") {
            Some(SyslogTarget::Udp(a.to_owned()))
        } else if let Some(a) = v.strip_prefix("tcp://") {
            Some(SyslogTarget::Tcp(a.to_owned()))
        } else {
            ctx.at(
                s.span().start,
                "syslog is unix:///dev/log, udp://HOST:PORT or tcp://HOST:PORT",
            );
            None
        }
    });
    let cache_ttl = d
        .cache_ttl
        .as_ref()
        .and_then(|t| ctx.duration(t))
        .map_or(std::time::Duration::from_secs(30), std_duration);
    let containerd_socket = match d.containerd_socket.as_deref() {
        None => Some(PathBuf::from("/run/containerd/containerd.sock")),
        Some("") => None,
        Some(p) => Some(PathBuf::from(p)),
    };
    let kubernetes_api = d.kubernetes_api.as_ref().and_then(|u| {
        let v = u.get_ref();
        if v.starts_with("https://") {
            Some(v.clone())
        } else {
            ctx.at(
                u.span().start,
                "kubernetes_api is the API server's https:// URL (leave it out in a pod: the in-cluster address is used)",
            );
            None
        }
    });
    let otlp = d.otlp.as_ref().and_then(|u| {
        let v = u.get_ref();
        // Plain gRPC only: a collector on the node or the cluster network, as fleets
        // run it; an https:// URL is refused rather than sent in the clear.
        match v.strip_prefix("http://") {
            Some(rest) if !rest.is_empty() && !rest.contains(['/', '?', '#', '@']) => {
                Some(v.clone())
            }
            _ => {
                ctx.at(
                    u.span().start,
                    "otlp is an OpenTelemetry Collector's OTLP/gRPC address, http://HOST:PORT (e.g. http://127.0.0.1:4317); TLS is not supported yet: send to a collector on the node or in the cluster",
                );
                None
            }
        }
    });
    DaemonSettings {
        otlp,
        kubernetes_events: d.kubernetes_events.unwrap_or(false),
        kubernetes_api,
        socket: PathBuf::from(d.socket.as_deref().unwrap_or(DEFAULT_SOCKET)),
        allowed_uids: d.allowed_uids.clone().unwrap_or_default(),
        allowed_gids: d.allowed_gids.clone().unwrap_or_default(),
        state_dir: PathBuf::from(d.state_dir.as_deref().unwrap_or("/var/lib/pullguard")),
        keys_dir: PathBuf::from(d.keys_dir.as_deref().unwrap_or("/etc/pullguard/keys")),
        events_file: PathBuf::from(
            d.events_file
                .as_deref()
                .unwrap_or("/var/log/pullguard/events.jsonl"),
        ),
        events_max_bytes: d.events_max_bytes.unwrap_or(100 * 1024 * 1024),
        events_keep: d.events_keep.unwrap_or(5),
        stdout_events: d.stdout_events.unwrap_or(false),
        syslog,
        metrics: d.metrics.clone(),
        cache_ttl,
        containerd_socket: containerd_socket.clone(),
        watch_images: d.watch_images.unwrap_or(true),
        nri_socket: match (&d.nri_socket, &containerd_socket) {
            (Some(s), _) if s.get_ref().is_empty() => None,
            // NRI names the image a container is created from; its record (and so the
            // digest to judge) is read from containerd.
            (Some(s), None) => {
                ctx.at(
                    s.span().start,
                    "nri_socket needs containerd_socket: a container's image record (its digest) is read from containerd; set containerd_socket, or nri_socket = \"\" to turn NRI off",
                );
                None
            }
            (Some(s), Some(_)) => Some(PathBuf::from(s.get_ref())),
            // Off along with the watcher unless asked for; on beside it by default.
            (None, None) => None,
            (None, Some(_)) => Some(PathBuf::from(DEFAULT_NRI_SOCKET)),
        },
        registry_config_path: match d.registry_config_path.as_deref() {
            None => Some(PathBuf::from(DEFAULT_REGISTRY_CONFIG_PATH)),
            Some("") => None,
            Some(p) => Some(PathBuf::from(p)),
        },
        registry_auth_file: d
            .registry_auth_file
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(PathBuf::from),
        registry_timeout: d
            .registry_timeout
            .as_ref()
            .and_then(|t| ctx.duration(t))
            .map_or(std::time::Duration::from_secs(10), std_duration),
        sigstore_tuf: match d.sigstore_tuf.as_deref() {
            None => Some(DEFAULT_SIGSTORE_TUF.to_owned()),
            Some("") => None,
            Some(r) => Some(r.to_owned()),
        },
        // At least a minute: the CDN is not to be hammered.
        sigstore_tuf_interval: d
            .sigstore_tuf_interval
            .as_ref()
            .and_then(|t| ctx.duration(t))
            .map_or(std::time::Duration::from_secs(24 * 3600), std_duration)
            .max(std::time::Duration::from_secs(60)),
    }
}
