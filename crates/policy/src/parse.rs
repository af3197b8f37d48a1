//! Parsing and validating a policy file: every problem at once, each with its line and
//! column; rules built with their compiled globs; ties between rules refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::*;

/// `[daemon] socket` when unset. The clients' default is `api::DEFAULT_SOCKET` (policy
/// does not depend on the gRPC crate); the daemon's tests hold the two equal.
pub const DEFAULT_SOCKET: &str = "/run/pullguard/pullguard.sock";

/// `[daemon] nri_socket` when unset and the watcher is on: containerd's own default
/// (`nri::DEFAULT_SOCKET`; the daemon's tests keep the two equal).
pub const DEFAULT_NRI_SOCKET: &str = "/var/run/nri/nri.sock";

/// `[daemon] registry_config_path` when unset: where containerd's packages keep hosts.toml.
pub const DEFAULT_REGISTRY_CONFIG_PATH: &str = "/etc/containerd/certs.d";
/// Sigstore's public-good TUF repository (its CDN).
pub const DEFAULT_SIGSTORE_TUF: &str = "https://tuf-repo-cdn.sigstore.dev";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDaemon {
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
    nri_socket: Option<Spanned<String>>,
    watch_images: Option<bool>,
    registry_config_path: Option<String>,
    registry_auth_file: Option<String>,
    registry_timeout: Option<Spanned<String>>,
    sigstore_tuf: Option<String>,
    sigstore_tuf_interval: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    url: Spanned<String>,
    ca_file: Option<String>,
    timeout: Option<Spanned<String>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    name: Option<Spanned<String>>,
    #[serde(rename = "match")]
    pattern: Option<Spanned<String>>,
    any_registry: Option<bool>,
    mode: Option<Mode>,
    require: Option<Require>,
    proofs: Option<Vec<Proof>>,
    proofs_required: Option<ProofsRequired>,
    cosign_keys: Option<Vec<String>>,
    cosign_tlog: Option<bool>,
    cosign_check_reference: Option<bool>,
    signature_repository: Option<Spanned<String>>,
    cosign_identities: Option<Vec<CosignIdentity>>,
    notation_trust_stores: Option<Vec<String>>,
    notation_identities: Option<Vec<String>>,
    notation_verification: Option<String>,
    notation_revocation: Option<String>,
    trusted_root: Option<String>,
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
pub(crate) struct RawPolicy {
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
        // About the file as a whole: no position (line 0).
        let whole = |message: String| PolicyError {
            file: path.to_path_buf(),
            problems: vec![Problem {
                line: 0,
                column: 0,
                message,
            }],
        };
        let file = std::fs::File::open(path).map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                "; name the policy file (pullguard: --policy FILE; pullguardd: --config FILE)"
            } else {
                ""
            };
            whole(format!("cannot read the policy file: {e}{hint}"))
        })?;
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
                let every = schema::problems(text);
                if every.is_empty() {
                    ctx.at(e.span().map_or(0, |s| s.start), e.message().to_owned());
                }
                for (offset, message) in every {
                    ctx.at(offset, message);
                }
                ctx.problems.sort_by_key(|p| (p.line, p.column));
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
        shadowed_by_laxer(&mut ctx, &rules);
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

/// A rule that can never apply because an earlier one with the same pattern wins, and
/// that earlier one is laxer: what its author meant to enforce would silently not be
/// (an imported `require = "any"` ahead of the signed rule for the same scope). Refused;
/// a shadowing rule as strict or stricter is only warned about (`Policy::lint`).
fn shadowed_by_laxer(ctx: &mut Ctx<'_>, rules: &[Rule]) {
    for (i, r) in rules.iter().enumerate() {
        let Some(earlier) = rules[..i].iter().find(|e| e.pattern == r.pattern) else {
            continue;
        };
        if crate::lint::laxness(earlier) > crate::lint::laxness(r) {
            ctx.problems.push(Problem {
                line: r.position.0,
                column: r.position.1,
                message: format!(
                    "rule {} can never apply: rule {} (line {}) has the same pattern, comes first and is laxer ({}), so what rule {} requires would not be enforced; merge them or delete one",
                    r.name,
                    earlier.name,
                    earlier.position.0,
                    crate::lint::describe(earlier),
                    r.name
                ),
            });
        }
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
    let containerd_socket = match d.containerd_socket.as_deref() {
        None => Some(PathBuf::from("/run/containerd/containerd.sock")),
        Some("") => None,
        Some(p) => Some(PathBuf::from(p)),
    };
    DaemonSettings {
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

/// A rule's cosign settings. A rule that accepts cosign must say whose signatures count;
/// transparency-log evidence is required unless it says otherwise.
fn cosign_rule(
    ctx: &mut Ctx<'_>,
    at: usize,
    name: &str,
    r: &RawRule,
    defaults: &RawRule,
    used: bool,
) -> CosignRule {
    let keys: Vec<PathBuf> = or(&r.cosign_keys, &defaults.cosign_keys)
        .unwrap_or_default()
        .into_iter()
        .map(PathBuf::from)
        .collect();
    let tlog = or(&r.cosign_tlog, &defaults.cosign_tlog).unwrap_or(true);
    let signature_repository = or(&r.signature_repository, &defaults.signature_repository).and_then(|s| {
        let v = s.get_ref();
        match ImageRef::parse(&format!("{v}:x")) {
            Ok(parsed) if parsed.repository() == *v => Some(v.clone()),
            Ok(parsed) => {
                ctx.at(s.span().start, format!("rule {name}: signature_repository {v:?} is not in its normal form; write {:?}", parsed.repository()));
                None
            }
            Err(e) => {
                ctx.at(s.span().start, format!("rule {name}: signature_repository {v:?}: {e}"));
                None
            }
        }
    });
    let identities = or(&r.cosign_identities, &defaults.cosign_identities).unwrap_or_default();
    let trusted_root = or(&r.trusted_root, &defaults.trusted_root).map(PathBuf::from);
    for i in &identities {
        if i.subject.is_some() == i.subject_regex.is_some() {
            ctx.at(
                at,
                format!("rule {name}: each of cosign_identities needs subject or subject_regex (one of them) besides issuer"),
            );
        }
        if i.issuer.is_some() == i.issuer_regex.is_some() {
            ctx.at(
                at,
                format!("rule {name}: each of cosign_identities needs issuer or issuer_regex (one of them)"),
            );
        }
    }
    if used && keys.is_empty() && identities.is_empty() {
        ctx.at(
            at,
            format!("rule {name}: proofs lists cosign but names no signer: give cosign_keys (public key files, cosign.pub) or cosign_identities (keyless: issuer and subject)"),
        );
    }
    if used && trusted_root.is_none() && (tlog || !identities.is_empty()) {
        let why = if identities.is_empty() {
            "cosign_tlog = true (the default) requires transparency-log evidence, verified with the logs' keys of Sigstore's trusted_root.json; give trusted_root, or set cosign_tlog = false to accept key-signed images without a log entry (cosign sign --tlog-upload=false)"
        } else {
            "keyless signatures (cosign_identities) are verified against the Fulcio CAs, logs and timestamp authorities of Sigstore's trusted_root.json; give trusted_root"
        };
        ctx.at(at, format!("rule {name}: {why}"));
    }
    CosignRule {
        keys,
        tlog,
        check_reference: or(&r.cosign_check_reference, &defaults.cosign_check_reference)
            .unwrap_or(false),
        signature_repository,
        identities,
        trusted_root,
    }
}

/// A rule's Notation settings, checked as the Notary Project's trust policy would be.
fn notation_rule(
    ctx: &mut Ctx<'_>,
    at: usize,
    name: &str,
    r: &RawRule,
    defaults: &RawRule,
    used: bool,
) -> NotationRule {
    let mut problem = |m: String| ctx.at(at, format!("rule {name}: {m}"));
    let mut trust_stores = Vec::new();
    for s in or(&r.notation_trust_stores, &defaults.notation_trust_stores).unwrap_or_default() {
        match s.split_once(':') {
            Some((t @ ("ca" | "signingAuthority" | "tsa"), n))
                if !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) && !n.starts_with('.') =>
            {
                trust_stores.push((t.to_owned(), n.to_owned()))
            }
            _ => problem(format!("notation trust store {s:?} is not TYPE:NAME with TYPE ca, signingAuthority or tsa and NAME of letters, digits, '-', '_' or '.'")),
        }
    }
    let identities = or(&r.notation_identities, &defaults.notation_identities).unwrap_or_default();
    for i in &identities {
        let i = i.trim();
        if i != "*"
            && !i
                .strip_prefix("x509.subject:")
                .is_some_and(|dn| dn.contains('='))
        {
            problem(format!(
                "notation identity {i:?} is not \"*\" or \"x509.subject: C=..., O=..., CN=...\""
            ));
        }
    }
    if identities.len() > 1 && identities.iter().any(|i| i.trim() == "*") {
        problem("notation_identities has \"*\" beside other identities; \"*\" alone trusts every signer of the trust stores".to_owned());
    }
    let level = or(&r.notation_verification, &defaults.notation_verification)
        .unwrap_or_else(|| "strict".to_owned());
    if !["strict", "permissive", "audit"].contains(&level.as_str()) {
        problem(format!("notation_verification {level:?} is not strict, permissive or audit (skip is require = \"any\")"));
    }
    let revocation = or(&r.notation_revocation, &defaults.notation_revocation)
        .unwrap_or_else(|| "skip".to_owned());
    if !["skip", "refuse"].contains(&revocation.as_str()) {
        problem(format!(
            "notation_revocation {revocation:?} is not skip or refuse"
        ));
    }
    if used && !trust_stores.iter().any(|(t, _)| t != "tsa") {
        problem(
            "proofs lists notation but notation_trust_stores names no ca or signingAuthority store"
                .to_owned(),
        );
    }
    if used && identities.is_empty() {
        problem("proofs lists notation but notation_identities is empty (\"*\" trusts every signer of the stores)".to_owned());
    }
    NotationRule {
        trust_stores,
        identities,
        level,
        revocation,
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
    // A wildcard in the registry's name lets the rule judge other registries, an
    // attacker's among them (`registry.example.com*/**` matches
    // `registry.example.com.attacker.example`): only when the rule says it means that.
    if let Some(host) = crosses_hosts(pattern.get_ref()) {
        if r.any_registry != Some(true) {
            ctx.at(pattern.span().start, format!(
                "rule {name}: the registry part {host:?} of pattern {:?} has a wildcard, so it also matches other registries (e.g. {:?}); write the registry host in full, or set any_registry = true in the rule if it is meant to apply on every registry",
                pattern.get_ref(),
                format!("{}.attacker.example", host.trim_end_matches(['*', '?']).trim_start_matches(['*', '?']))
            ));
        }
    }
    let require = or(&r.require, &defaults.require).unwrap_or(Require::Signed);
    let proofs = or(&r.proofs, &defaults.proofs).unwrap_or_else(|| vec![Proof::NotaryV1]);
    let accepts_notary = proofs.contains(&Proof::NotaryV1);
    let trust_server: Option<Spanned<String>> = or(&r.trust_server, &defaults.trust_server);
    if let Some(ts) = &trust_server {
        if !servers.contains_key(ts.get_ref()) {
            ctx.at(
                ts.span().start,
                format!("rule {name}: no [trust_server.{}] is defined", ts.get_ref()),
            );
        }
    } else if require == Require::Signed && accepts_notary {
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
    let cosign = cosign_rule(
        ctx,
        at,
        &name,
        r,
        defaults,
        require == Require::Signed && proofs.contains(&Proof::Cosign),
    );
    for (i, p) in proofs.iter().enumerate() {
        if proofs[..i].contains(p) {
            ctx.at(
                at,
                format!("rule {name}: proofs lists {} twice", p.as_str()),
            );
        }
    }
    if proofs.is_empty() && require == Require::Signed {
        ctx.at(
            at,
            format!("rule {name}: proofs is empty, so nothing could satisfy require = \"signed\""),
        );
    }
    let notation = notation_rule(
        ctx,
        at,
        &name,
        r,
        defaults,
        require == Require::Signed && proofs.contains(&Proof::Notation),
    );
    Some(Rule {
        position: ctx.position(pattern.span().start),
        name,
        pattern: pattern.get_ref().clone(),
        mode: or(&r.mode, &defaults.mode).unwrap_or(Mode::Enforce),
        require,
        proofs,
        proofs_required: or(&r.proofs_required, &defaults.proofs_required)
            .unwrap_or(ProofsRequired::All),
        cosign,
        notation,
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

/// The registry part of `pattern` when a wildcard in it can match another host than
/// the one written (a port wildcard, `127.0.0.1:*`, names one host; the catch-all `**`
/// is a rule for every registry by its nature, and says so).
pub(crate) fn crosses_hosts(pattern: &str) -> Option<&str> {
    if pattern == "**" {
        return None;
    }
    let (host, _) = pattern.split_once('/')?;
    let name = host.split_once(':').map_or(host, |(n, _)| n);
    name.contains(['*', '?', '[']).then_some(host)
}
