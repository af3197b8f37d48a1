//! pullguard's policy file: which images must be signed, by whom, how fresh, and what to
//! do when the trust server cannot be reached.
//!
//! Parsing is a pure function over text ([`Policy::parse`]) so that tests and the
//! `policy check` command feed it directly; every problem is reported at once, each with
//! file, line and column. Rules match normalised references ([`ImageRef`]) by glob: `*`
//! within one path segment, `**` across segments, `?` one character. The most specific
//! rule wins: an exact pattern, then the one with the longest literal text before its
//! first wildcard (so `registry.example.com/prod/**` beats
//! `registry.example.com/**/sandbox/**` for `prod/sandbox/x`), then the one with the most
//! literal characters. Two different patterns tied on both that can match one reference
//! are an error; the same pattern twice is a warning, and the first applies.
//!
//! The verdict engine is format-neutral: a rule names the kinds of proof it accepts
//! (`proofs = ["notary-v1"]`). Notary v1 is the only kind today; another is an addition.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

pub mod duration;
pub use schema::{edit_distance, nearest};
mod daemon;
mod glob;
mod lint;
mod merge;
mod parse;
mod reference;
mod rule;
mod schema;

use glob::Glob;
pub use parse::{check_trust_server_url, DEFAULT_NRI_SOCKET, DEFAULT_SOCKET};
pub use reference::{anchor_repository, canonical_host, names_a_host, ImageRef, ReferenceError};
pub use rule::{
    CosignIdentity, CosignRule, NotationLevel, NotationRule, Proof, ProofsRequired, Revocation,
    Rule,
};

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Line, 1-based.
    pub line: usize,
    /// Column, 1-based.
    pub column: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// The largest policy file read (10,000 rules take about 1 MiB).
pub const MAX_POLICY_BYTES: u64 = 16 << 20;

/// A policy file that does not parse or validate: every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    /// The file.
    pub file: PathBuf,
    /// Problems, in file order.
    pub problems: Vec<Problem>,
}

impl PolicyError {
    /// Each problem as `FILE:LINE:COLUMN: message` (`FILE: message` when it is about the
    /// whole file).
    pub fn each(&self) -> impl Iterator<Item = String> + '_ {
        self.problems.iter().map(|p| {
            if p.line == 0 {
                format!("{}: {}", self.file.display(), p.message)
            } else {
                format!(
                    "{}:{}:{}: {}",
                    self.file.display(),
                    p.line,
                    p.column,
                    p.message
                )
            }
        })
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.each().collect::<Vec<_>>().join("; "))
    }
}

/// Enforce, or only record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Rejections block the pull (also the mode of a pull no rule matches).
    #[default]
    Enforce,
    /// Rejections are recorded as `pull.audited`; the pull goes on.
    Audit,
}

impl Mode {
    /// `enforce` or `audit`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        }
    }
}

/// What a rule requires of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Require {
    /// Signed trust data must vouch for the image.
    Signed,
    /// Anything goes (recorded).
    Any,
    /// Nothing matching may be pulled.
    Reject,
}

/// What to do when the trust server cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnreachable {
    /// Reject the pull.
    Deny,
    /// Use trust data verified earlier, if it is still within its expiry and max age.
    Cached,
}

/// A trust server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustServer {
    /// Name in the policy.
    pub name: String,
    /// Base URL, e.g. `https://notary.example.com:4443`.
    pub url: String,
    /// CA bundle (PEM) to verify its TLS certificate; system roots when absent.
    pub ca_file: Option<PathBuf>,
    /// Connect and read timeout.
    pub timeout: std::time::Duration,
}

impl Rule {
    /// How specific the pattern is: (exact, literal characters before the first
    /// wildcard, literal characters). Higher wins. Two different patterns that rank
    /// the same and can match the same reference are refused when the policy loads.
    pub fn specificity(&self) -> (bool, usize, usize) {
        self.glob.rank()
    }
}

/// Something in a valid policy that is probably not what its author meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The rule concerned.
    pub rule: String,
    /// Line of its `match`.
    pub line: usize,
    /// Column of its `match`.
    pub column: usize,
    /// What is wrong and what to write instead.
    pub message: String,
}

/// How a syslog receiver is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogTarget {
    /// A unix datagram socket, e.g. `/dev/log`.
    Unix(PathBuf),
    /// UDP host:port.
    Udp(String),
    /// TCP host:port (octet-counted frames).
    Tcp(String),
}

/// Daemon settings (`[daemon]`); changes take effect at restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSettings {
    /// gRPC unix socket.
    pub socket: PathBuf,
    /// Uids allowed to call (root is always allowed).
    pub allowed_uids: Vec<u32>,
    /// Gids allowed to call.
    pub allowed_gids: Vec<u32>,
    /// State directory (trusted state, cached trust data).
    pub state_dir: PathBuf,
    /// Keys directory (anchors).
    pub keys_dir: PathBuf,
    /// Durable events file (JSON lines).
    pub events_file: PathBuf,
    /// Rotate the events file past this size.
    pub events_max_bytes: u64,
    /// Rotated files kept.
    pub events_keep: usize,
    /// Also write events to stdout (journald).
    pub stdout_events: bool,
    /// Syslog receiver, if any.
    pub syslog: Option<SyslogTarget>,
    /// Prometheus endpoint address, if any (loopback unless stated).
    pub metrics: Option<String>,
    /// How long verified trust data answers without a refetch.
    pub cache_ttl: std::time::Duration,
    /// containerd's gRPC socket for the event watcher; `None` (set to "") turns it off.
    pub containerd_socket: Option<PathBuf>,
    /// Run the event watcher on `containerd_socket` (sweeps, removals); `false` keeps the
    /// socket for the NRI gate's image lookups only.
    pub watch_images: bool,
    /// containerd's NRI socket for the container-creation gate; `None` (set to "", or
    /// the watcher off and this unset) turns it off.
    pub nri_socket: Option<PathBuf>,
    /// containerd's registry host configuration directory (`hosts.toml` files), read
    /// when fetching signatures stored in registries; `None` (set to "") uses HTTPS to
    /// each registry itself.
    pub registry_config_path: Option<PathBuf>,
    /// A docker `config.json` with registry credentials; anonymous when unset.
    pub registry_auth_file: Option<PathBuf>,
    /// Connect and read timeout for registries.
    pub registry_timeout: std::time::Duration,
    /// Sigstore's TUF repository (URL or directory) the public-good trusted root is
    /// refreshed from, when a rule uses it; `None` (set to "") never refreshes.
    pub sigstore_tuf: Option<String>,
    /// How often it is refreshed.
    pub sigstore_tuf_interval: std::time::Duration,
    /// Post a Kubernetes Event on the Pod of each refused (or audited) container, with
    /// the pod's service account (pullguardd running in a Kubernetes pod).
    pub kubernetes_events: bool,
    /// The Kubernetes API server's URL for those Events; `None`: the in-cluster one
    /// (`KUBERNETES_SERVICE_HOST`, `KUBERNETES_SERVICE_PORT`).
    pub kubernetes_api: Option<String>,
    /// An OpenTelemetry Collector's OTLP/gRPC address (`http://HOST:PORT`) every event
    /// is also exported to (logs signal), resent from the events file after an outage.
    pub otlp: Option<String>,
}

impl DaemonSettings {
    /// Names of the settings, different in `new`, that take effect only when pullguardd
    /// restarts (the socket, files and sinks it opened at start). The others —
    /// `allowed_uids`, `allowed_gids`, `keys_dir`, `cache_ttl` — apply from the reload on.
    pub fn restart_only_changes(&self, new: &DaemonSettings) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut check = |changed: bool, name: &'static str| {
            if changed {
                out.push(name);
            }
        };
        check(self.socket != new.socket, "socket");
        check(self.state_dir != new.state_dir, "state_dir");
        check(self.events_file != new.events_file, "events_file");
        check(
            self.events_max_bytes != new.events_max_bytes,
            "events_max_bytes",
        );
        check(self.events_keep != new.events_keep, "events_keep");
        check(self.stdout_events != new.stdout_events, "stdout_events");
        check(self.syslog != new.syslog, "syslog");
        check(self.metrics != new.metrics, "metrics");
        check(
            self.containerd_socket != new.containerd_socket,
            "containerd_socket",
        );
        check(self.nri_socket != new.nri_socket, "nri_socket");
        check(self.watch_images != new.watch_images, "watch_images");
        check(
            self.kubernetes_events != new.kubernetes_events,
            "kubernetes_events",
        );
        check(self.kubernetes_api != new.kubernetes_api, "kubernetes_api");
        check(self.otlp != new.otlp, "otlp");
        out
    }
}

/// A parsed, validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Daemon settings.
    pub daemon: DaemonSettings,
    /// Trust servers by name.
    pub trust_servers: BTreeMap<String, TrustServer>,
    /// Rules in file order.
    pub rules: Vec<Rule>,
}

impl Policy {
    /// The rule for `image`: the most specific match, or `None`.
    ///
    /// A reference with both a tag and a digest (`app:v1@sha256:…`) is matched as
    /// `app@sha256:…`: containerd pulls the digest and the tag is only a label, so a
    /// tag-scoped rule (`…/app:dev-*`) must not decide what it lets in. Under a signed
    /// rule the tag must in addition resolve to that digest.
    pub fn rule_for(&self, image: &ImageRef) -> Option<&Rule> {
        let subject = match_subject(image);
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.glob.matches(&subject))
            .max_by_key(|(i, r)| (r.glob.rank(), std::cmp::Reverse(*i)))
            .map(|(_, r)| r)
    }

    /// Every rule matching `image`, the winner first, then in the order they would win.
    pub fn candidates(&self, image: &ImageRef) -> Vec<&Rule> {
        let subject = match_subject(image);
        let mut found: Vec<(usize, &Rule)> = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.glob.matches(&subject))
            .collect();
        found.sort_by_key(|(i, r)| (std::cmp::Reverse(r.glob.rank()), *i));
        found.into_iter().map(|(_, r)| r).collect()
    }
}

/// Whether `subject` matches `pattern` with the policy's glob syntax (`*` within a
/// segment, `**` across, `?` one character), for tools that filter by the same patterns
/// rules use. A pattern that does not compile matches nothing.
pub fn pattern_matches(pattern: &str, subject: &str) -> bool {
    Glob::new(pattern).is_ok_and(|g| g.matches(subject))
}

/// Whether some reference matches both patterns (policy glob syntax); `None` when one
/// does not compile.
pub fn patterns_overlap(a: &str, b: &str) -> Option<bool> {
    Some(Glob::new(a).ok()?.overlaps(&Glob::new(b).ok()?))
}

/// What rules are matched against: the normalised reference, without its tag when it
/// also carries a digest (see [`Policy::rule_for`]).
fn match_subject(image: &ImageRef) -> String {
    if image.digest.is_some() && image.tag.is_some() {
        ImageRef {
            tag: None,
            ..image.clone()
        }
        .to_string()
    } else {
        image.to_string()
    }
}

#[cfg(test)]
mod tests;
