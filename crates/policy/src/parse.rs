//! Parsing and validating a policy file: every problem at once, each with its line and
//! column; rules built with their compiled globs; ties between rules refused.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::daemon::daemon_settings;
use super::rule::{build_rule, RawRule};
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
    pub(crate) socket: Option<String>,
    pub(crate) allowed_uids: Option<Vec<u32>>,
    pub(crate) allowed_gids: Option<Vec<u32>>,
    pub(crate) state_dir: Option<String>,
    pub(crate) keys_dir: Option<String>,
    pub(crate) events_file: Option<String>,
    pub(crate) events_max_bytes: Option<u64>,
    pub(crate) events_keep: Option<usize>,
    pub(crate) stdout_events: Option<bool>,
    pub(crate) syslog: Option<Spanned<String>>,
    pub(crate) metrics: Option<String>,
    pub(crate) cache_ttl: Option<Spanned<String>>,
    pub(crate) containerd_socket: Option<String>,
    pub(crate) nri_socket: Option<Spanned<String>>,
    pub(crate) watch_images: Option<bool>,
    pub(crate) registry_config_path: Option<String>,
    pub(crate) registry_auth_file: Option<String>,
    pub(crate) registry_timeout: Option<Spanned<String>>,
    pub(crate) sigstore_tuf: Option<String>,
    pub(crate) sigstore_tuf_interval: Option<Spanned<String>>,
    pub(crate) kubernetes_events: Option<bool>,
    pub(crate) kubernetes_api: Option<Spanned<String>>,
    pub(crate) otlp: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    url: Spanned<String>,
    ca_file: Option<String>,
    timeout: Option<Spanned<String>>,
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

pub(crate) struct Ctx<'a> {
    text: &'a str,
    problems: Vec<Problem>,
    /// Byte offset where each line starts: positions in O(log lines), not by rescanning
    /// the text (a policy with 10,000 rules asks 10,000 times).
    line_starts: Vec<usize>,
}

impl Ctx<'_> {
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
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

    pub(crate) fn at(&mut self, offset: usize, message: impl Into<String>) {
        let (line, column) = self.position(offset);
        self.problems.push(Problem {
            line,
            column,
            message: message.into(),
        });
    }

    pub(crate) fn duration(&mut self, v: &Spanned<String>) -> Option<time::Duration> {
        match duration::parse(v.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.at(v.span().start, e);
                None
            }
        }
    }
}

pub(crate) fn std_duration(d: time::Duration) -> std::time::Duration {
    std::time::Duration::from_millis(u64::try_from(d.whole_milliseconds()).unwrap_or(0))
}

impl Policy {
    /// Reads and parses a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = Policy::read(path)?;
        Policy::parse(path, &text)
    }

    /// Reads a policy file as [`Policy::load`] does (bounded, UTF-8), without parsing it:
    /// for a caller that also records what exactly it loaded (the daemon's policy
    /// version is the digest of these bytes).
    pub fn read(path: &Path) -> Result<String, PolicyError> {
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
        String::from_utf8(bytes)
            .map_err(|e| whole(format!("the policy file is not UTF-8 text: {e}")))
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
        // A rule's own keys, read as defaults they would be ignored without a word.
        let d = &raw.defaults;
        for (key, at) in [
            ("name", d.name.as_ref().map(|n| n.span().start)),
            ("match", d.pattern.as_ref().map(|p| p.span().start)),
        ] {
            if let Some(at) = at {
                ctx.at(
                    at,
                    format!("[defaults] cannot set {key}: it belongs to each [[rule]]"),
                );
            }
        }
        if let Some(a) = &d.any_registry {
            ctx.at(
                a.span().start,
                "[defaults] cannot set any_registry: set it in the [[rule]] whose pattern needs it",
            );
        }
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
    // The first rule of each pattern, found in one pass (a scan of the earlier rules for
    // each rule was quadratic: a quarter of a second for 10,000 rules on every reload).
    let mut first: HashMap<&str, &Rule> = HashMap::with_capacity(rules.len());
    for r in rules {
        let earlier = *first.entry(r.pattern.as_str()).or_insert(r);
        if std::ptr::eq(earlier, r) {
            continue;
        }
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
