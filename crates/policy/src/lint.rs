//! Warnings for policies that are valid but probably not what their author meant.

use super::*;

impl Policy {
    /// The lint's warnings in one sentence for an event (the first five, and how many
    /// more), or `None` when there are none: a policy that loads can still be laxer than
    /// its author meant, and the reload's event is where an operator looks.
    pub fn lint_summary(&self) -> Option<String> {
        let warnings = self.lint();
        let shown: Vec<String> = warnings
            .iter()
            .take(5)
            .map(|w| format!("line {}: {}", w.line, w.message))
            .collect();
        let more = warnings.len().saturating_sub(shown.len());
        (!shown.is_empty()).then(|| {
            format!(
                "`pullguard policy check` warns: {}{}",
                shown.join("; "),
                if more > 0 {
                    format!("; and {more} more")
                } else {
                    String::new()
                }
            )
        })
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
        // Each check of where a tag-scoped rule's digest pulls go scans the rules: a
        // bounded number of them keeps a large policy's reload linear.
        let mut digest_checks = 0;
        // The first rule of each pattern, in one pass (not a scan per rule).
        let mut first: std::collections::HashMap<&str, &Rule> =
            std::collections::HashMap::with_capacity(self.rules.len());
        for r in &self.rules {
            let earlier = *first.entry(r.pattern.as_str()).or_insert(r);
            if !std::ptr::eq(earlier, r) {
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
            if r.mode == Mode::Enforce
                && r.require == Require::Signed
                && r.proofs.contains(&Proof::Notation)
                && r.notation.level == NotationLevel::Audit
            {
                warn(r, format!("rule {} enforces, but notation_verification = \"audit\" lets a Notation signature by an untrusted signer or identity through as an allowed pull (its verdict's proofs show the failed check); use \"strict\", or mode = \"audit\" if nothing is meant to be refused", r.name));
            }
            if r.names_signers && r.require != Require::Signed {
                warn(r, format!("rule {} names signers, but its require is \"{}\" (its own, or from [defaults]), so they are never asked; set require = \"signed\" in the rule if they are meant to count", r.name, if r.require == Require::Any { "any" } else { "reject" }));
            }
            let specific_pins = !r.root_certs.is_empty() || !r.root_key_ids.is_empty();
            if specific_pins && !r.root_cas.is_empty() {
                warn(r, format!("rule {}: its root_cas are never used: root_certs / root_key_ids pin its repositories, and a pinned certificate or key ID decides alone (Notary's trust_pinning order); drop one of the two, or split the rule", r.name));
            }
            if let Some((server, host, when)) = self.retired_trust_server(r) {
                warn(r, format!("rule {} asks trust server {server} ({host}), which {when}: every image it matches is refused with trust_server_unreachable; move the rule to the proof its publishers use now (proofs = [\"cosign\"] or [\"notation\"], docs/migrating-from-dct.md)", r.name));
            }
            if tag_scoped(&r.pattern).is_some() && digest_checks < MAX_DIGEST_CHECKS {
                digest_checks += 1;
                if let Some((sample, other)) = self.digest_pulls_elsewhere(r) {
                    if laxness(other) > laxness(r) {
                        warn(r, format!("rule {}: pattern {:?} matches tags only, so a pull by digest of the same repository ({sample}) is decided by rule {}, which is laxer ({}); add a rule for {:?} as strict as this one", r.name, r.pattern, other.name, describe(other), sample.split_once('@').map_or(sample.as_str(), |(repo, _)| repo).to_owned() + "@*"));
                    }
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

impl Policy {
    /// What an operator must know first about a policy that enforces nothing for some
    /// images: the rules in audit mode, which let through what they would refuse
    /// (recorded as `pull.audited`). `None` when every rule enforces.
    pub fn audit_notice(&self) -> Option<String> {
        let audit: Vec<&str> = self
            .rules
            .iter()
            .filter(|r| r.mode == Mode::Audit && r.require != Require::Any)
            .map(|r| r.name.as_str())
            .collect();
        if audit.is_empty() {
            return None;
        }
        let all = audit.len() == self.rules.len();
        Some(format!(
            "{} in audit mode ({}): images {} would refuse are let through and recorded as pull.audited / container.audited; read those events (pullguard events --event pull.audited), then set mode = \"enforce\" in each rule (docs/migrating-from-dct.md)",
            if all { "every rule is".to_owned() } else { format!("{} of {} rules are", audit.len(), self.rules.len()) },
            audit.join(", "),
            if audit.len() == 1 { "it" } else { "they" },
        ))
    }
}

/// Notary v1 trust servers known to be shut down, with when.
const RETIRED_TRUST_SERVERS: [(&str, &str); 1] = [(
    "notary.docker.io",
    "Docker shut down on 2026-12-08 with Docker Content Trust",
)];

impl Policy {
    /// The retired trust server a rule that accepts Notary v1 asks, if any.
    fn retired_trust_server(&self, r: &Rule) -> Option<(&str, &'static str, &'static str)> {
        if !r.proofs.contains(&Proof::NotaryV1) || r.require != Require::Signed {
            return None;
        }
        let server = self.trust_servers.get(r.trust_server.as_deref()?)?;
        let host = server
            .url
            .split_once("://")
            .map_or(server.url.as_str(), |(_, rest)| rest)
            .split(['/', ':'])
            .next()?
            .trim_end_matches('.')
            .to_ascii_lowercase();
        RETIRED_TRUST_SERVERS
            .iter()
            .find(|(retired, _)| *retired == host)
            .map(|(h, when)| (server.name.as_str(), *h, *when))
    }
}

/// A rule's requirement in words, for messages.
pub(crate) fn describe(r: &Rule) -> &'static str {
    match (r.mode, r.require) {
        (Mode::Audit, _) => "audit mode",
        (_, Require::Any) => "require = \"any\"",
        (_, Require::Signed) => "signatures enforced",
        (_, Require::Reject) => "require = \"reject\"",
    }
}

/// 0 for a rule that refuses everything it matches, 1 for signatures enforced, 2 for
/// anything allowed (audit mode or `require = "any"`).
pub(crate) fn laxness(r: &Rule) -> u8 {
    match (r.mode, r.require) {
        (Mode::Audit, _) | (_, Require::Any) => 2,
        (Mode::Enforce, Require::Signed) => 1,
        (Mode::Enforce, Require::Reject) => 0,
    }
}

/// A pattern whose last segment scopes tags (`…/app:*`, no digest part): the part
/// before that segment, and the segment's repository name.
fn tag_scoped(pattern: &str) -> Option<(&str, &str)> {
    let (dir, last) = pattern.rsplit_once('/')?;
    let (repo, _tag) = last.split_once(':')?;
    (!last.contains('@')).then_some((dir, repo))
}

/// Tag-scoped rules whose digest pulls are looked at by the lint, at most: each look
/// scans every rule.
const MAX_DIGEST_CHECKS: usize = 256;

impl Policy {
    /// For a rule whose pattern scopes tags (`…/app:*`, `…/app:v1`), which cannot match a
    /// pull by digest (matched as `…/app@sha256:…`): a sample digest reference of its
    /// repository, and the rule that decides it instead, if any.
    fn digest_pulls_elsewhere(&self, r: &Rule) -> Option<(String, &Rule)> {
        let (dir, repo) = tag_scoped(&r.pattern)?;
        let sample = format!("{dir}/{repo}")
            .replace("**", "x")
            .replace(['*', '?'], "x");
        let sample = format!("{sample}@sha256:{}", "0".repeat(64));
        let image = ImageRef::parse(&sample).ok()?;
        let other = self.rule_for(&image)?;
        (!std::ptr::eq(other, r)).then_some((sample, other))
    }
}

/// Why no normalised reference (`domain/path:tag` or `domain/path@sha256:HEX`, lower
/// case, `docker.io/library/` for official images) can match `pattern`, if so.
fn never_matches(pattern: &str, exact: bool) -> Option<String> {
    if exact {
        return match ImageRef::parse(pattern) {
            Err(e) => Some(format!("{pattern:?} is not an image reference ({e})")),
            Ok(r) if r.tag.is_some() && r.digest.is_some() => Some(format!(
                "a reference with a tag and a digest is matched by its digest alone (the tag is only a label); write {:?}",
                format!("{}/{}@{}", r.domain, r.path, r.digest.as_deref().unwrap_or_default())
            )),
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
mod tests {
    use std::path::Path;

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

    /// CAs beside a certificate or key ID pin are never asked (the specific pin decides):
    /// said, so that nobody counts on them.
    #[test]
    fn root_cas_beside_a_certificate_or_key_pin_are_said_to_be_unused() {
        let w = lint(&format!("[[rule]]\nname = \"app\"\nmatch = \"r.example.com/app/**\"\nroot_cas = [\"corp.crt\"]\nroot_key_ids = [\"{}\"]\n", "a".repeat(64)));
        assert!(
            w.len() == 1 && w[0].contains("rule app: its root_cas are never used"),
            "{w:?}"
        );
        assert!(lint("[[rule]]\nname = \"app\"\nmatch = \"r.example.com/app/**\"\nroot_cas = [\"corp.crt\"]\n").is_empty());
    }

    /// A strict rule scoped to tags leaves pulls by digest of its repository to a laxer
    /// rule: `app@sha256:EVIL` was allowed unsigned, without a word.
    #[test]
    fn a_tag_scoped_rule_whose_digest_pulls_go_to_a_laxer_rule_is_warned() {
        let strict = "[[rule]]\nname = \"app\"\nmatch = \"registry.example.com/prod/app:*\"\n";
        let lax = "[[rule]]\nname = \"prod\"\nmatch = \"registry.example.com/prod/**\"\nrequire = \"any\"\n";
        let w = lint(&format!("{strict}{lax}"));
        assert!(
            w.iter().any(|w| w.contains("rule app")
                && w.contains("decided by rule prod")
                && w.contains("\"registry.example.com/prod/app@*\"")),
            "{w:?}"
        );
        // With the digest form covered as strictly: nothing to say.
        let twin =
            "[[rule]]\nname = \"app-digests\"\nmatch = \"registry.example.com/prod/app@*\"\n";
        assert!(lint(&format!("{strict}{twin}{lax}")).is_empty());
        // A tag and a digest in one exact pattern: the tag is never part of the subject.
        let both = format!(
            "[[rule]]\nname = \"pinned\"\nmatch = \"registry.example.com/prod/app:v1@sha256:{}\"\n",
            "a".repeat(64)
        );
        let w = lint(&both);
        assert!(
            w.iter()
                .any(|w| w.contains("can never match") && w.contains("digest alone")),
            "{w:?}"
        );
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
            // Patterns that cross hosts load only when the rule says so; they are still
            // warned about.
            let any = if crate::rule::crosses_hosts(pattern).is_some() {
                "any_registry = true\n"
            } else {
                ""
            };
            let w = lint(&format!(
                "[[rule]]\nname = \"r\"\nmatch = \"{pattern}\"\n{any}"
            ));
            assert_eq!(w.len(), 1, "{pattern}: {w:?}");
            assert!(w[0].starts_with("7:9 "), "{pattern}: {w:?}");
            assert!(w[0].contains(expect), "{pattern}: {w:?}");
        }
        let dup = lint("[[rule]]\nname = \"a\"\nmatch = \"r.io/**\"\n[[rule]]\nname = \"b\"\nmatch = \"r.io/**\"\n");
        assert_eq!(dup.len(), 1);
        assert!(dup[0].contains("rule b can never apply: rule a"), "{dup:?}");
    }

    #[test]
    fn notation_audit_level_under_an_enforce_rule_is_warned() {
        let rule = |level: &str| {
            lint(&format!("[[rule]]\nname = \"n\"\nmatch = \"registry.example.com/**\"\nproofs = [\"notation\"]\nnotation_trust_stores = [\"ca:acme\"]\nnotation_identities = [\"*\"]\nnotation_verification = \"{level}\"\n"))
        };
        let w = rule("audit");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("notation_verification = \"audit\" lets"),
            "{w:?}"
        );
        assert!(rule("strict").is_empty());
        assert!(rule("permissive").is_empty());
    }

    #[test]
    fn a_rule_asking_the_retired_docker_notary_is_warned() {
        let text = "[trust_server.hub]\nurl = \"https://Notary.Docker.io\"\n[[rule]]\nname = \"hub\"\nmatch = \"docker.io/**\"\ntrust_server = \"hub\"\n[[rule]]\nname = \"cosign\"\nmatch = \"registry.example.com/**\"\ntrust_server = \"hub\"\nproofs = [\"cosign\"]\ncosign_keys = [\"k.pub\"]\ncosign_tlog = false\n";
        let w: Vec<String> = Policy::parse(Path::new("p.toml"), text)
            .expect("valid")
            .lint()
            .into_iter()
            .map(|w| format!("{}:{} {}", w.line, w.column, w.message))
            .collect();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("5:9 ")
                && w[0].contains("notary.docker.io")
                && w[0].contains("2026-12-08"),
            "{w:?}"
        );
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
