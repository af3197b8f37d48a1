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
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

pub mod duration;
mod reference;

pub use reference::{canonical_host, ImageRef, ReferenceError};

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

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                p.line,
                p.column,
                p.message
            )?;
        }
        Ok(())
    }
}

/// Enforce, or only record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Rejections block the pull.
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

/// A kind of proof a rule accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Proof {
    /// Docker Content Trust: Notary v1 / TUF metadata.
    #[serde(rename = "notary-v1")]
    NotaryV1,
}

impl Proof {
    /// The name the policy file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Proof::NotaryV1 => "notary-v1",
        }
    }
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

/// A rule, with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Name, for events and messages.
    pub name: String,
    /// Glob over normalised references.
    pub pattern: String,
    /// Enforce or audit.
    pub mode: Mode,
    /// Signed, any, reject.
    pub require: Require,
    /// Accepted kinds of proof.
    pub proofs: Vec<Proof>,
    /// Trust server name (for `signed`).
    pub trust_server: Option<String>,
    /// Roles that must sign the tag; empty means Docker's rules.
    pub roles: Vec<String>,
    /// How many of `roles` must sign (default: all).
    pub roles_required: usize,
    /// Maximum timestamp age.
    pub max_timestamp_age: Option<time::Duration>,
    /// Trust-server outage behaviour.
    pub on_unreachable: OnUnreachable,
    /// Allow trust on first use when no anchor pins the repository.
    pub tofu: bool,
    /// Pinned root key IDs, in addition to the keys directory's anchors.
    pub root_key_ids: Vec<String>,
    /// Pinned CA certificate files (relative paths are under the keys directory).
    pub root_cas: Vec<PathBuf>,
    /// Pinned root certificate files.
    pub root_certs: Vec<PathBuf>,
    /// Where its `match` is in the file (line, column), for messages.
    pub position: (usize, usize),
    glob: Glob,
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    socket: Option<String>,
    allowed_uids: Option<Vec<u32>>,
    allowed_gids: Option<Vec<u32>>,
    state_dir: Option<String>,
    keys_dir: Option<String>,
    events_file: Option<String>,
    events_max_bytes: Option<u64>,
    events_keep: Option<usize>,
    stdout_events: Option<bool>,
    syslog: Option<Spanned<String>>,
    metrics: Option<String>,
    cache_ttl: Option<Spanned<String>>,
    containerd_socket: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    url: Spanned<String>,
    ca_file: Option<String>,
    timeout: Option<Spanned<String>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<Spanned<String>>,
    #[serde(rename = "match")]
    pattern: Option<Spanned<String>>,
    mode: Option<Mode>,
    require: Option<Require>,
    proofs: Option<Vec<Proof>>,
    trust_server: Option<Spanned<String>>,
    roles: Option<Vec<String>>,
    roles_required: Option<Spanned<usize>>,
    max_timestamp_age: Option<Spanned<String>>,
    on_unreachable: Option<OnUnreachable>,
    tofu: Option<bool>,
    root_key_ids: Option<Vec<Spanned<String>>>,
    root_cas: Option<Vec<String>>,
    root_certs: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    trust_server: BTreeMap<String, RawServer>,
    #[serde(default)]
    defaults: RawRule,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

struct Ctx<'a> {
    text: &'a str,
    problems: Vec<Problem>,
    /// Byte offset where each line starts: positions in O(log lines), not by rescanning
    /// the text (a policy with 10,000 rules asks 10,000 times).
    line_starts: Vec<usize>,
}

impl Ctx<'_> {
    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|s| *s <= offset);
        let start = self.line_starts[line.saturating_sub(1)];
        let column = self
            .text
            .get(start..offset)
            .map_or(0, |l| l.chars().count())
            + 1;
        (line, column)
    }

    fn at(&mut self, offset: usize, message: impl Into<String>) {
        let (line, column) = self.position(offset);
        self.problems.push(Problem {
            line,
            column,
            message: message.into(),
        });
    }

    fn duration(&mut self, v: &Spanned<String>) -> Option<time::Duration> {
        match duration::parse(v.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.at(v.span().start, e);
                None
            }
        }
    }
}

fn std_duration(d: time::Duration) -> std::time::Duration {
    std::time::Duration::from_millis(u64::try_from(d.whole_milliseconds()).unwrap_or(0))
}

impl Policy {
    /// Reads and parses a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let whole = |message: String| PolicyError {
            file: path.to_path_buf(),
            problems: vec![Problem {
                line: 1,
                column: 1,
                message,
            }],
        };
        let file = std::fs::File::open(path)
            .map_err(|e| whole(format!("cannot read the policy file: {e}")))?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(whole(
                "the policy path is a directory, not a file; point the daemon at the .toml file inside"
                    .to_owned(),
            ));
        }
        // Read one byte past the limit to tell "exactly at the limit" from "too large"
        // without trusting the size the file system reports (a pipe or /proc file has none).
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(file, MAX_POLICY_BYTES + 1),
            &mut bytes,
        )
        .map_err(|e| whole(format!("cannot read the policy file: {e}")))?;
        if bytes.len() as u64 > MAX_POLICY_BYTES {
            return Err(whole(format!(
                "the policy file is larger than {} MiB; split it or remove unused rules",
                MAX_POLICY_BYTES >> 20
            )));
        }
        let text = String::from_utf8(bytes)
            .map_err(|e| whole(format!("the policy file is not UTF-8 text: {e}")))?;
        Policy::parse(path, &text)
    }

    /// Parses policy text; `file` is used in messages.
    pub fn parse(file: &Path, text: &str) -> Result<Policy, PolicyError> {
        let fail = |problems| PolicyError {
            file: file.to_path_buf(),
            problems,
        };
        let mut ctx = Ctx {
            text,
            problems: Vec::new(),
            line_starts: std::iter::once(0)
                .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
        };
        let raw: RawPolicy = match toml::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                ctx.at(e.span().map_or(0, |s| s.start), e.message().to_owned());
                return Err(fail(ctx.problems));
            }
        };
        let daemon = daemon_settings(&mut ctx, &raw.daemon);
        let mut trust_servers = BTreeMap::new();
        for (name, s) in &raw.trust_server {
            let url = s.url.get_ref().trim_end_matches('/').to_owned();
            if let Err(why) = check_trust_server_url(&url) {
                ctx.at(s.url.span().start, format!("trust server {name}: {why}"));
            }
            let timeout = s
                .timeout
                .as_ref()
                .and_then(|t| ctx.duration(t))
                .map_or(std::time::Duration::from_secs(3), std_duration);
            trust_servers.insert(
                name.clone(),
                TrustServer {
                    name: name.clone(),
                    url,
                    ca_file: s.ca_file.as_ref().map(PathBuf::from),
                    timeout,
                },
            );
        }
        let mut rules = Vec::new();
        let mut names = BTreeMap::new();
        for (i, r) in raw.rule.iter().enumerate() {
            if let Some(rule) = build_rule(&mut ctx, i, r, &raw.defaults, &trust_servers) {
                if let Some(prev) = names.insert(rule.name.clone(), i) {
                    ctx.at(
                        r.span().start,
                        format!(
                            "rule name {:?} is already used by rule {}",
                            rule.name,
                            prev + 1
                        ),
                    );
                }
                rules.push(rule);
            }
        }
        tied_rules(&mut ctx, &rules);
        if raw.rule.is_empty() && ctx.problems.is_empty() {
            // A file with no rules would reject every pull; far more often it is an
            // editor's or a deployment's write caught half way, so it is refused.
            ctx.problems.push(Problem {
                line: 1,
                column: 1,
                message: if text.trim().is_empty() {
                    "the policy file is empty (a write in progress?); write the whole policy, then rename it into place".to_owned()
                } else {
                    "the policy has no [[rule]], so every image would be rejected; add rules (to reject everything on purpose: match = \"**\", require = \"reject\")".to_owned()
                },
            });
        }
        if ctx.problems.is_empty() {
            Ok(Policy {
                daemon,
                trust_servers,
                rules,
            })
        } else {
            ctx.problems.sort_by_key(|p| (p.line, p.column));
            Err(fail(ctx.problems))
        }
    }

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

    /// Rules that are valid but probably wrong: patterns no normalised reference can
    /// match, rules another rule always beats, wildcards that let any registry in.
    pub fn lint(&self) -> Vec<Warning> {
        let mut out = Vec::new();
        let mut warn = |r: &Rule, message: String| {
            out.push(Warning {
                rule: r.name.clone(),
                line: r.position.0,
                column: r.position.1,
                message,
            });
        };
        for (i, r) in self.rules.iter().enumerate() {
            if let Some(earlier) = self.rules[..i].iter().find(|e| e.pattern == r.pattern) {
                warn(r, format!("rule {} can never apply: rule {} has the same pattern and comes first; merge them or delete one", r.name, earlier.name));
                continue;
            }
            if let Some(why) = never_matches(&r.pattern, r.glob.exact) {
                warn(r, format!("rule {} can never match: {why}", r.name));
                continue;
            }
            let host = r.pattern.split('/').next().unwrap_or("");
            // A wildcard in the port only (`127.0.0.1:*`) still names one host: ports of
            // normalised references are digits.
            let name = host.split_once(':').map_or(host, |(n, _)| n);
            if !host.starts_with(['*', '?']) && name.contains(['*', '?']) {
                warn(r, format!("rule {}: the registry part of pattern {:?} has a wildcard, so it also matches other registries (e.g. {:?}); write the registry host in full", r.name, r.pattern, format!("{}.attacker.example", name.trim_end_matches(['*', '?']))));
            }
            if r.pattern == "**" {
                let lax = laxness(r);
                for own in self.rules.iter().filter(|o| {
                    o.pattern
                        .strip_suffix("/**")
                        .is_some_and(|h| !h.contains(['*', '?', '/']))
                        && laxness(o) < lax
                }) {
                    warn(r, format!("catch-all rule {} is laxer than rule {} for the whole registry {:?}: an image that reaches this node under another registry name (a mirror, an alias) gets the catch-all; make the catch-all at least as strict and add explicit rules for what may run unverified", r.name, own.name, own.pattern.trim_end_matches("/**")));
                }
            }
            if r.pattern != "**" && r.pattern.starts_with('*') {
                let looser = match r.require {
                    Require::Reject => "",
                    _ => " (an attacker's registry with the same path gets this rule)",
                };
                warn(r, format!("rule {}: pattern {:?} starts with a wildcard, so it applies on every registry{looser}; name the registry, e.g. \"registry.example.com/{}\"", r.name, r.pattern, r.pattern.trim_start_matches(['*', '/'])));
            }
        }
        out
    }
}

/// A trust server URL: `https://HOST[:PORT][/PATH]`, or plain `http://` only when the
/// host is a loopback IP address or exactly `localhost`. Parsed, not prefix-matched:
/// `http://127.0.0.1@notary.example.com` and `http://127.0.0.1.nip.io` are elsewhere.
pub fn check_trust_server_url(url: &str) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("url {url:?} must start with https://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() {
        return Err(format!("url {url:?} must name a host"));
    }
    if rest.contains(['?', '#']) {
        return Err(format!("url {url:?} may not have a query or fragment"));
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map(|(h, _)| h).unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                authority
            }
        }),
    };
    match scheme {
        "https" => Ok(()),
        "http" => {
            // `http://127.0.0.1@evil.example.com` is a request to evil.example.com.
            let loopback = !authority.contains('@')
                && (host == "localhost"
                    || host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback()));
            if loopback {
                Ok(())
            } else {
                Err(format!(
                    "url {url:?}: plain http is accepted only for a loopback address (127.0.0.0/8, [::1]) or exactly localhost; use https://"
                ))
            }
        }
        other => Err(format!("url {url:?}: scheme {other:?} is not https")),
    }
}

/// Two different patterns of equal rank that can match one reference: which applies
/// would depend on their order in the file, which nobody reading a rule sees.
fn tied_rules(ctx: &mut Ctx<'_>, rules: &[Rule]) {
    let mut by_rank: BTreeMap<(usize, usize, &str), Vec<usize>> = BTreeMap::new();
    for (i, r) in rules.iter().enumerate() {
        if !r.glob.exact {
            let prefix_len: usize = r
                .pattern
                .chars()
                .take(r.glob.prefix)
                .map(char::len_utf8)
                .sum();
            by_rank
                .entry((r.glob.prefix, r.glob.literal, &r.pattern[..prefix_len]))
                .or_default()
                .push(i);
        }
    }
    for group in by_rank.values().filter(|g| g.len() > 1) {
        for (n, &i) in group.iter().enumerate() {
            let Some(&j) = group[..n].iter().find(|&&j| {
                rules[j].pattern != rules[i].pattern && rules[j].glob.overlaps(&rules[i].glob)
            }) else {
                continue;
            };
            let (a, b) = (&rules[j], &rules[i]);
            ctx.problems.push(Problem {
                line: b.position.0,
                column: b.position.1,
                message: format!(
                "rules {} ({:?}, line {}) and {} ({:?}) can match the same image and are equally specific (same literal text before the first wildcard, same number of literal characters), so which applies is not clear; make one of them more specific, or merge them",
                a.name, a.pattern, a.position.0, b.name, b.pattern
            ),
            });
        }
    }
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

/// 0 for a rule that refuses everything it matches, 1 for signatures enforced, 2 for
/// anything allowed (audit mode or `require = "any"`).
fn laxness(r: &Rule) -> u8 {
    match (r.mode, r.require) {
        (Mode::Audit, _) | (_, Require::Any) => 2,
        (Mode::Enforce, Require::Signed) => 1,
        (Mode::Enforce, Require::Reject) => 0,
    }
}

/// Why no normalised reference (`domain/path:tag` or `domain/path@sha256:HEX`, lower
/// case, `docker.io/library/` for official images) can match `pattern`, if so.
fn never_matches(pattern: &str, exact: bool) -> Option<String> {
    if exact {
        return match ImageRef::parse(pattern) {
            Err(e) => Some(format!("{pattern:?} is not an image reference ({e})")),
            Ok(r) if r.to_string() != pattern => Some(format!(
                "references are matched in normalised form, and {pattern:?} normalises to {:?}; write that",
                r.to_string()
            )),
            Ok(_) => None,
        };
    }
    if !pattern.contains('/') && !pattern.contains("**") {
        return Some(format!(
            "{pattern:?} has no registry part, and every normalised reference starts with one (docker.io/library/... for Docker Hub)"
        ));
    }
    let domain = pattern.split('/').next().unwrap_or(pattern);
    if domain.contains(['*', '?']) {
        return None;
    }
    if domain.chars().any(|c| c.is_ascii_uppercase()) {
        return Some(format!(
            "registry names are matched in lower case; write {:?}",
            pattern.to_ascii_lowercase()
        ));
    }
    match canonical_host(domain) {
        Err(why) => return Some(why),
        Ok(c) if c == "docker.io" && domain != "docker.io" => {
            return Some(format!(
                "Docker Hub references are normalised to docker.io; write {:?}",
                pattern.replacen(domain, "docker.io", 1)
            ))
        }
        Ok(c) if c != domain => {
            return Some(format!(
                "registry hosts are matched in one spelling (no trailing dot, no leading zeros or :443 in the port); write {:?}",
                pattern.replacen(domain, &c, 1)
            ))
        }
        Ok(_) => {}
    }
    if !(domain.contains('.') || domain.contains(':') || domain == "localhost") {
        return Some(format!(
            "{domain:?} is not a registry host, so the reference names a Docker Hub repository, normalised to docker.io/...; write {:?}",
            format!("docker.io/{}", pattern)
        ));
    }
    None
}

#[cfg(test)]
mod lint_tests {
    use super::*;

    fn lint(rules: &str) -> Vec<String> {
        let text = format!("[trust_server.m]\nurl = \"https://n.example.com\"\n[defaults]\ntrust_server = \"m\"\n{rules}");
        Policy::parse(Path::new("p.toml"), &text)
            .expect("valid")
            .lint()
            .into_iter()
            .map(|w| format!("{}:{} {}", w.line, w.column, w.message))
            .collect()
    }

    #[test]
    fn clean_policies_have_no_warnings() {
        assert!(lint("[[rule]]\nname = \"a\"\nmatch = \"registry.example.com/prod/**\"\n[[rule]]\nname = \"all\"\nmatch = \"**\"\n").is_empty());
    }

    #[test]
    fn each_warning_fires_with_its_position() {
        let cases = [
            (
                "docker.io/alpine:3.20",
                "normalises to \"docker.io/library/alpine:3.20\"",
            ),
            (
                "registry.example.com/app",
                "normalises to \"registry.example.com/app:latest\"",
            ),
            ("Registry.example.com/**", "lower case"),
            (
                "index.docker.io/library/**",
                "write \"docker.io/library/**\"",
            ),
            ("library/alpine:*", "not a registry host"),
            ("alpine*", "no registry part"),
            ("**/prod/**", "starts with a wildcard"),
            ("registry.example.com*/**", "attacker.example"),
            (
                "registry.example.com:0443/**",
                "write \"registry.example.com/**\"",
            ),
            ("*/team/app:*", "attacker"),
        ];
        for (pattern, expect) in cases {
            let w = lint(&format!("[[rule]]\nname = \"r\"\nmatch = \"{pattern}\"\n"));
            assert_eq!(w.len(), 1, "{pattern}: {w:?}");
            assert!(w[0].starts_with("7:9 "), "{pattern}: {w:?}");
            assert!(w[0].contains(expect), "{pattern}: {w:?}");
        }
        let dup = lint("[[rule]]\nname = \"a\"\nmatch = \"r.io/**\"\n[[rule]]\nname = \"b\"\nmatch = \"r.io/**\"\n");
        assert_eq!(dup.len(), 1);
        assert!(dup[0].contains("rule b can never apply: rule a"), "{dup:?}");
    }

    #[test]
    fn a_catch_all_laxer_than_a_registrys_own_rule_is_warned() {
        let w = lint("[[rule]]\nname = \"reg\"\nmatch = \"registry.example.com/**\"\n[[rule]]\nname = \"all\"\nmatch = \"**\"\nrequire = \"any\"\n");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("catch-all rule all is laxer than rule reg"),
            "{w:?}"
        );
        let strict = lint("[[rule]]\nname = \"reg\"\nmatch = \"registry.example.com/**\"\nrequire = \"any\"\n[[rule]]\nname = \"all\"\nmatch = \"**\"\nrequire = \"reject\"\n");
        assert!(strict.is_empty(), "{strict:?}");
    }

    #[test]
    fn candidates_come_in_the_order_they_win() {
        let text = "[trust_server.m]\nurl = \"https://n.example.com\"\n[defaults]\ntrust_server = \"m\"\n[[rule]]\nname = \"all\"\nmatch = \"**\"\n[[rule]]\nname = \"team\"\nmatch = \"r.io/team/**\"\n[[rule]]\nname = \"app\"\nmatch = \"r.io/team/app:v1\"\n";
        let p = Policy::parse(Path::new("p.toml"), text).expect("valid");
        let names: Vec<&str> = p
            .candidates(&ImageRef::parse("r.io/team/app:v1").expect("ref"))
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(names, ["app", "team", "all"]);
    }
}

fn daemon_settings(ctx: &mut Ctx<'_>, d: &RawDaemon) -> DaemonSettings {
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
    DaemonSettings {
        socket: PathBuf::from(
            d.socket
                .as_deref()
                .unwrap_or("/run/pullguard/pullguard.sock"),
        ),
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
        containerd_socket: match d.containerd_socket.as_deref() {
            None => Some(PathBuf::from("/run/containerd/containerd.sock")),
            Some("") => None,
            Some(p) => Some(PathBuf::from(p)),
        },
    }
}

/// A rule's own value, else the `[defaults]` one.
fn or<T: Clone>(own: &Option<T>, default: &Option<T>) -> Option<T> {
    own.clone().or_else(|| default.clone())
}

fn build_rule(
    ctx: &mut Ctx<'_>,
    index: usize,
    spanned: &Spanned<RawRule>,
    defaults: &RawRule,
    servers: &BTreeMap<String, TrustServer>,
) -> Option<Rule> {
    let r = spanned.get_ref();
    let at = spanned.span().start;
    let name = r
        .name
        .as_ref()
        .map_or_else(|| format!("rule-{}", index + 1), |n| n.get_ref().clone());
    let Some(pattern) = &r.pattern else {
        ctx.at(at, format!("rule {name}: needs `match`, a glob over references such as \"registry.example.com/prod/**\""));
        return None;
    };
    let glob = match Glob::new(pattern.get_ref()) {
        Ok(g) => g,
        Err(e) => {
            ctx.at(pattern.span().start, format!("rule {name}: {e}"));
            return None;
        }
    };
    let require = or(&r.require, &defaults.require).unwrap_or(Require::Signed);
    let trust_server: Option<Spanned<String>> = or(&r.trust_server, &defaults.trust_server);
    if let Some(ts) = &trust_server {
        if !servers.contains_key(ts.get_ref()) {
            ctx.at(
                ts.span().start,
                format!("rule {name}: no [trust_server.{}] is defined", ts.get_ref()),
            );
        }
    } else if require == Require::Signed {
        ctx.at(
            at,
            format!(
                "rule {name}: require = \"signed\" needs a trust_server (here or in [defaults])"
            ),
        );
    }
    let roles: Vec<String> = or(&r.roles, &defaults.roles).unwrap_or_default();
    for role in &roles {
        if role != "targets" && !role.starts_with("targets/") {
            ctx.at(
                at,
                format!("rule {name}: role {role:?} is not targets or a targets/ delegation"),
            );
        }
    }
    let roles_required = match or(&r.roles_required, &defaults.roles_required) {
        Some(n) if *n.get_ref() == 0 || *n.get_ref() > roles.len() => {
            ctx.at(
                n.span().start,
                format!(
                    "rule {name}: roles_required must be between 1 and the {} roles listed",
                    roles.len()
                ),
            );
            roles.len()
        }
        Some(n) => *n.get_ref(),
        None => roles.len(),
    };
    let max_timestamp_age =
        or(&r.max_timestamp_age, &defaults.max_timestamp_age).and_then(|d| ctx.duration(&d));
    let root_key_ids: Vec<String> = or(&r.root_key_ids, &defaults.root_key_ids)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|id| {
            let v = id.get_ref();
            if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
                Some(v.to_ascii_lowercase())
            } else {
                ctx.at(
                    id.span().start,
                    format!("rule {name}: root key ID {v:?} is not 64 hex digits"),
                );
                None
            }
        })
        .collect();
    let proofs = or(&r.proofs, &defaults.proofs).unwrap_or_else(|| vec![Proof::NotaryV1]);
    if proofs.is_empty() && require == Require::Signed {
        ctx.at(
            at,
            format!("rule {name}: proofs is empty, so nothing could satisfy require = \"signed\""),
        );
    }
    Some(Rule {
        position: ctx.position(pattern.span().start),
        name,
        pattern: pattern.get_ref().clone(),
        mode: or(&r.mode, &defaults.mode).unwrap_or(Mode::Enforce),
        require,
        proofs,
        trust_server: trust_server.map(Spanned::into_inner),
        roles,
        roles_required,
        max_timestamp_age,
        on_unreachable: or(&r.on_unreachable, &defaults.on_unreachable)
            .unwrap_or(OnUnreachable::Deny),
        tofu: or(&r.tofu, &defaults.tofu).unwrap_or(false),
        root_key_ids,
        root_cas: or(&r.root_cas, &defaults.root_cas)
            .unwrap_or_default()
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        root_certs: or(&r.root_certs, &defaults.root_certs)
            .unwrap_or_default()
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        glob,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Lit(char),
    Any,
    AnyInSegment,
    One,
}

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Glob {
    tokens: Vec<Token>,
    exact: bool,
    /// Characters before the first wildcard: the first measure of how specific it is.
    prefix: usize,
    literal: usize,
}

impl Glob {
    fn new(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("match pattern is empty".to_owned());
        }
        if pattern.contains("***") {
            return Err(format!("match pattern {pattern:?}: use * or **, not ***"));
        }
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    Token::Any
                }
                '*' => Token::AnyInSegment,
                '?' => Token::One,
                c => Token::Lit(c),
            });
        }
        let literal = tokens.iter().filter(|t| matches!(t, Token::Lit(_))).count();
        let prefix = tokens
            .iter()
            .take_while(|t| matches!(t, Token::Lit(_)))
            .count();
        Ok(Glob {
            exact: literal == tokens.len(),
            prefix,
            literal,
            tokens,
        })
    }

    /// Precedence: an exact pattern, then the longest literal text before the first
    /// wildcard (the path an operator wrote out), then the most literal characters.
    fn rank(&self) -> (bool, usize, usize) {
        (self.exact, self.prefix, self.literal)
    }

    /// Whether some string matches both globs: a search over pairs of positions.
    fn overlaps(&self, other: &Glob) -> bool {
        let (a, b) = (&self.tokens, &other.tokens);
        let star = |t: Option<&Token>| matches!(t, Some(Token::Any | Token::AnyInSegment));
        // What one token accepts as the next character: a literal, any but '/', anything.
        let class = |t: &Token| match t {
            Token::Lit(c) => Some(*c),
            _ => None,
        };
        let slash_ok = |t: &Token| matches!(t, Token::Any) || matches!(t, Token::Lit('/'));
        let mut seen = std::collections::HashSet::new();
        let mut todo = vec![(0usize, 0usize)];
        while let Some((i, j)) = todo.pop() {
            if !seen.insert((i, j)) {
                continue;
            }
            if i == a.len() && j == b.len() {
                return true;
            }
            // A star may match nothing.
            if star(a.get(i)) {
                todo.push((i + 1, j));
            }
            if star(b.get(j)) {
                todo.push((i, j + 1));
            }
            let (Some(ta), Some(tb)) = (a.get(i), b.get(j)) else {
                continue;
            };
            let common = match (class(ta), class(tb)) {
                (Some(x), Some(y)) => x == y,
                (Some(x), None) => x != '/' || slash_ok(tb),
                (None, Some(y)) => y != '/' || slash_ok(ta),
                // Two wildcards share every character but '/', at least.
                (None, None) => true,
            };
            if common {
                let ni = if star(Some(ta)) { i } else { i + 1 };
                let nj = if star(Some(tb)) { j } else { j + 1 };
                if (ni, nj) != (i, j) {
                    todo.push((ni, nj));
                }
                // A star may also stop after this character.
                if star(Some(ta)) {
                    todo.push((i + 1, nj));
                }
                if star(Some(tb)) {
                    todo.push((ni, j + 1));
                }
            }
        }
        false
    }

    fn matches(&self, s: &str) -> bool {
        let chars: Vec<char> = s.chars().collect();
        // Backtracking is fast for real patterns; a pattern with several `**` against a
        // long hostile reference could take polynomial time of high degree, so after a
        // step budget the dynamic-programming matcher (O(tokens x chars)) decides.
        let mut budget = 4096u32;
        match backtrack(&self.tokens, &chars, &mut budget) {
            Some(m) => m,
            None => table_match(&self.tokens, &chars),
        }
    }
}

/// `None` when the budget ran out.
fn backtrack(t: &[Token], s: &[char], budget: &mut u32) -> Option<bool> {
    *budget = budget.checked_sub(1)?;
    Some(match t.first() {
        None => s.is_empty(),
        Some(Token::Lit(c)) => s.first() == Some(c) && backtrack(&t[1..], &s[1..], budget)?,
        Some(Token::One) => {
            s.first().is_some_and(|c| *c != '/') && backtrack(&t[1..], &s[1..], budget)?
        }
        Some(Token::AnyInSegment) => {
            let mut i = 0;
            loop {
                if backtrack(&t[1..], &s[i..], budget)? {
                    break true;
                }
                if i >= s.len() || s[i] == '/' {
                    break false;
                }
                i += 1;
            }
        }
        Some(Token::Any) => {
            let mut found = false;
            for i in 0..=s.len() {
                if backtrack(&t[1..], &s[i..], budget)? {
                    found = true;
                    break;
                }
            }
            found
        }
    })
}

/// `m[j]`: the tokens so far match `s[..j]`.
fn table_match(t: &[Token], s: &[char]) -> bool {
    let mut m = vec![false; s.len() + 1];
    m[0] = true;
    for tok in t {
        let mut next = vec![false; s.len() + 1];
        match tok {
            Token::Lit(c) => {
                for j in 0..s.len() {
                    next[j + 1] = m[j] && s[j] == *c;
                }
            }
            Token::One => {
                for j in 0..s.len() {
                    next[j + 1] = m[j] && s[j] != '/';
                }
            }
            Token::Any => {
                let mut any = false;
                for j in 0..=s.len() {
                    any |= m[j];
                    next[j] = any;
                }
            }
            Token::AnyInSegment => {
                let mut run = false;
                for j in 0..=s.len() {
                    run = m[j] || (run && j > 0 && s[j - 1] != '/');
                    next[j] = run;
                }
            }
        }
        m = next;
    }
    m[s.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[trust_server.main]
url = "https://notary.example.com"

[defaults]
trust_server = "main"
"#;

    fn policy(rules: &str) -> Result<Policy, PolicyError> {
        Policy::parse(Path::new("policy.toml"), &format!("{BASE}{rules}"))
    }

    #[test]
    fn load_refuses_oversized_empty_rule_less_and_directory_paths() {
        let dir = std::env::temp_dir().join(format!("pullguard-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("p.toml");
        let rule = "[[rule]]\nname = \"a\"\nmatch = \"**\"\nrequire = \"any\"\n";
        let mut big = String::from(rule);
        big.push_str(&"#".repeat(usize::try_from(MAX_POLICY_BYTES).unwrap()));
        let cases: [(&str, &str); 3] = [
            (&big, "larger than 16 MiB"),
            ("  \n", "is empty"),
            ("[daemon]\n", "no [[rule]]"),
        ];
        for (text, want) in cases {
            std::fs::write(&file, text).unwrap();
            let err = Policy::load(&file).unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
        std::fs::write(&file, rule).unwrap();
        assert_eq!(Policy::load(&file).unwrap().rules.len(), 1);
        let err = Policy::load(&dir).unwrap_err().to_string();
        assert!(err.contains("is a directory"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn rule_name(p: &Policy, image: &str) -> Option<String> {
        p.rule_for(&ImageRef::parse(image).expect("ref"))
            .map(|r| r.name.clone())
    }

    #[test]
    fn hostile_references_against_many_stars_finish_and_agree() {
        let g = Glob::new("**a**a**a**a**a**b").expect("glob");
        let long: String = "a".repeat(4000);
        let t = std::time::Instant::now();
        assert!(!g.matches(&long));
        assert!(g.matches(&format!("{long}b")));
        // Generous bound: the point is "not hours", not a timing target.
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
        // Both matchers agree on ordinary cases.
        for (p, s) in [
            ("registry.test/*/app:*", "registry.test/team/app:v1"),
            ("registry.test/*/app:*", "registry.test/a/b/app:v1"),
            ("registry.test/**", "registry.test/a/b/app:v1"),
            ("registry.test/?eam/**", "registry.test/team/x:1"),
            ("registry.test/?eam/**", "registry.test//x:1"),
            ("*", "a/b"),
            ("a*b*c", "aXbYc"),
        ] {
            let g = Glob::new(p).expect("glob");
            let chars: Vec<char> = s.chars().collect();
            let mut budget = u32::MAX;
            assert_eq!(
                backtrack(&g.tokens, &chars, &mut budget),
                Some(table_match(&g.tokens, &chars)),
                "{p} {s}"
            );
        }
    }

    #[test]
    fn globs() {
        let g = |p: &str, s: &str| Glob::new(p).expect("glob").matches(s);
        assert!(g(
            "registry.example.com/prod/**",
            "registry.example.com/prod/a/b:v1"
        ));
        assert!(g(
            "registry.example.com/prod/*",
            "registry.example.com/prod/app:v1"
        ));
        assert!(!g(
            "registry.example.com/prod/*",
            "registry.example.com/prod/a/b:v1"
        ));
        assert!(g(
            "docker.io/library/alpine:3.?",
            "docker.io/library/alpine:3.9"
        ));
        assert!(!g(
            "docker.io/library/alpine:3.?",
            "docker.io/library/alpine:3.20"
        ));
        assert!(g("**", "anything/at:all"));
        assert!(!g(
            "registry.example.com/prod/**",
            "registry.example.com/production/x:1"
        ));
    }

    #[test]
    fn most_specific_rule_wins() {
        let p = policy(
            r#"
[[rule]]
name = "all"
match = "**"
require = "any"
[[rule]]
name = "prod"
match = "registry.example.com/prod/**"
[[rule]]
name = "prod-app"
match = "registry.example.com/prod/app:*"
[[rule]]
name = "exact"
match = "registry.example.com/prod/app:v1"
require = "reject"
"#,
        )
        .expect("valid");
        assert_eq!(
            rule_name(&p, "registry.example.com/prod/app:v1").as_deref(),
            Some("exact")
        );
        assert_eq!(
            rule_name(&p, "registry.example.com/prod/app:v2").as_deref(),
            Some("prod-app")
        );
        assert_eq!(
            rule_name(&p, "registry.example.com/prod/db:v2").as_deref(),
            Some("prod")
        );
        assert_eq!(rule_name(&p, "alpine").as_deref(), Some("all"));
    }

    /// The red team's case: under "most literal characters wins", the lax sandbox rule
    /// (more literals) beat the enforced prod rule for prod/sandbox/evil.
    #[test]
    fn a_lax_rule_with_more_literals_does_not_beat_a_longer_written_out_path() {
        let p = policy(
            r#"
[[rule]]
name = "prod"
match = "registry.example.com/prod/**"
[[rule]]
name = "sandbox"
match = "registry.example.com/**/sandbox/**"
require = "any"
"#,
        )
        .expect("valid");
        assert_eq!(
            rule_name(&p, "registry.example.com/prod/sandbox/evil:1").as_deref(),
            Some("prod")
        );
        assert_eq!(
            rule_name(&p, "registry.example.com/dev/sandbox/x:1").as_deref(),
            Some("sandbox")
        );
    }

    #[test]
    fn equally_specific_overlapping_rules_are_an_error() {
        let e = policy(
            r#"
[[rule]]
name = "a"
match = "registry.example.com/team/*/x:*"
[[rule]]
name = "b"
match = "registry.example.com/team/**:v1"
require = "any"
"#,
        )
        .expect_err("tie");
        assert!(
            e.to_string().contains("rules a") && e.to_string().contains("equally specific"),
            "{e}"
        );
        // Same rank but disjoint: fine.
        policy(
            r#"
[[rule]]
name = "a"
match = "registry.example.com/team/*:v1"
[[rule]]
name = "b"
match = "registry.example.com/team/*:v2"
"#,
        )
        .expect("disjoint patterns of equal rank");
    }

    #[test]
    fn overlap_is_decided_by_the_globs() {
        let o = |a: &str, b: &str| Glob::new(a).unwrap().overlaps(&Glob::new(b).unwrap());
        assert!(o("r/**", "r/*/x"));
        assert!(o("r/*/x:*", "r/**:v1"));
        assert!(!o("r/*:v1", "r/*:v2"));
        assert!(!o("r/*", "r/a/b"), "* stays in one segment");
        assert!(o("r/?/b", "r/a/*"));
        assert!(!o("a/**", "b/**"));
        assert!(o("**", "x"));
    }

    #[test]
    fn plain_http_trust_servers_only_on_loopback_by_parsed_host() {
        for good in [
            "https://notary.example.com",
            "https://notary.example.com:4443/base",
            "http://127.0.0.1:4443",
            "http://127.8.9.1",
            "http://localhost:4443",
            "http://[::1]:4443",
        ] {
            assert!(check_trust_server_url(good).is_ok(), "{good}");
        }
        for bad in [
            "http://127.0.0.1@notary.example.com",
            "http://127.0.0.1.nip.io",
            "http://localhost.example.com",
            "http://127.0.0.1:80@evil.example.com/",
            "http://notary.example.com",
            "ftp://127.0.0.1",
            "notary.example.com",
        ] {
            assert!(check_trust_server_url(bad).is_err(), "{bad}");
        }
    }

    /// `app:dev-1@sha256:EVIL`: containerd pulls EVIL, so the unsigned dev-tag rule must
    /// not be the one that judges it.
    #[test]
    fn tag_scoped_rules_do_not_judge_a_reference_that_carries_a_digest() {
        let p = policy(
            r#"
[[rule]]
name = "app"
match = "registry.example.com/app**"
[[rule]]
name = "dev"
match = "registry.example.com/app:dev-*"
require = "any"
"#,
        )
        .expect("valid");
        assert_eq!(
            rule_name(&p, "registry.example.com/app:dev-1").as_deref(),
            Some("dev")
        );
        let evil = format!("registry.example.com/app:dev-1@sha256:{}", "e".repeat(64));
        assert_eq!(rule_name(&p, &evil).as_deref(), Some("app"));
    }

    #[test]
    fn no_rule_means_none() {
        let p = policy("[[rule]]\nmatch = \"registry.example.com/**\"\n").expect("valid");
        assert_eq!(rule_name(&p, "alpine"), None);
    }

    #[test]
    fn every_problem_is_reported_with_line_and_column() {
        let err = policy(
            r#"
[[rule]]
name = "a"
match = "x/**"
trust_server = "nope"
max_timestamp_age = "soon"

[[rule]]
name = "a"
match = "y/**"
roles = ["targets/releases"]
roles_required = 2
"#,
        )
        .expect_err("invalid");
        let msgs: Vec<String> = err
            .problems
            .iter()
            .map(|p| format!("{}:{} {}", p.line, p.column, p.message))
            .collect();
        assert_eq!(err.problems.len(), 4, "{msgs:?}");
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("11:16") && m.contains("no [trust_server.nope]")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("12:21") && m.contains("\"soon\" is not a duration")),
            "{msgs:?}"
        );
        assert!(msgs.iter().any(|m| m.contains("already used")), "{msgs:?}");
        assert!(
            msgs.iter().any(|m| m.contains("roles_required")),
            "{msgs:?}"
        );
        assert!(err.to_string().starts_with("policy.toml:"), "{err}");
    }

    #[test]
    fn syntax_errors_point_at_the_spot() {
        let err = Policy::parse(Path::new("p.toml"), "[daemon]\nsocket = \n").expect_err("syntax");
        assert_eq!(
            (err.problems[0].line, err.problems[0].column),
            (2, 10),
            "{err}"
        );
        let err = Policy::parse(
            Path::new("p.toml"),
            "[[rule]]\nmatch = \"**\"\nmodee = \"audit\"\n",
        )
        .expect_err("unknown key");
        assert_eq!(err.problems[0].line, 3, "{err}");
        assert!(err.problems[0].message.contains("modee"), "{err}");
    }

    #[test]
    fn signed_needs_a_trust_server() {
        let err = Policy::parse(Path::new("p.toml"), "[[rule]]\nmatch = \"**\"\n")
            .expect_err("no server");
        assert!(err.to_string().contains("needs a trust_server"), "{err}");
    }
}
