//! `pullguard policy import-notation`: a Notation trust policy (trustpolicy.json, as
//! `notation policy import` takes it) turned into pullguard rules, printed as TOML for the
//! operator to review and paste. What pullguard cannot express exactly is refused, each
//! with its reason; nothing is approximated silently.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use policy::ImageRef;
use serde::Deserialize;

use crate::exit::{fail, Exit};

pub const EXAMPLES: &str = "Examples:
  pullguard policy import-notation ~/.config/notation/trustpolicy.json \\
      --trust-store ~/.config/notation/truststore >> /etc/pullguard/pullguard.toml
  cp -r ~/.config/notation/truststore /etc/pullguard/keys/notation/

Exit codes: 0 printed, 1 something cannot be expressed (every reason listed, nothing printed), 2 unreadable files.";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Document {
    version: String,
    trust_policies: Vec<TrustPolicy>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TrustPolicy {
    name: String,
    registry_scopes: Vec<String>,
    signature_verification: Verification,
    #[serde(default)]
    trust_stores: Vec<String>,
    #[serde(default)]
    trusted_identities: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Verification {
    level: String,
    #[serde(default)]
    r#override: std::collections::BTreeMap<String, String>,
    #[serde(default, rename = "verifyTimestamp")]
    verify_timestamp: Option<String>,
}

/// Turns `file` into rules; `trust_store`: Notation's truststore directory, checked for
/// every store the policy names.
pub fn run(file: &Path, trust_store: Option<&PathBuf>) -> ExitCode {
    let text = match std::fs::read(file) {
        Ok(t) => t,
        Err(e) => {
            return fail(
                Exit::Usage,
                false,
                "unreadable",
                &format!("{}: {e}", file.display()),
            )
        }
    };
    match convert(&text, trust_store.map(PathBuf::as_path)) {
        Ok(toml) => {
            print!("{toml}");
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for p in &problems {
                eprintln!("pullguard: {}: {p}", file.display());
            }
            ExitCode::from(Exit::Refused)
        }
    }
}

/// The rules, or every reason the policy cannot be expressed.
pub fn convert(json: &[u8], trust_store: Option<&Path>) -> Result<String, Vec<String>> {
    let doc: Document = serde_json::from_slice(json)
        .map_err(|e| vec![format!("not a Notation trust policy: {e}")])?;
    let mut problems = Vec::new();
    if doc.version != "1.0" {
        problems.push(format!("version {:?}: only 1.0 is known", doc.version));
    }
    // What Notation itself refuses to load is refused here too, before anything is
    // converted: a policy notation-go rejects must not become rules that allow.
    problems.extend(notation_refuses(&doc));
    let mut out = String::from("# Imported from a Notation trust policy by `pullguard policy import-notation`.\n# Copy Notation's truststore directory to KEYS_DIR/notation/truststore (x509/TYPE/NAME/).\n");
    for p in &doc.trust_policies {
        let mut problem = |m: String| problems.push(format!("trust policy {:?}: {m}", p.name));
        let v = &p.signature_verification;
        // Every setting that changes what a rule means is written out: the rules are
        // appended to a file whose [defaults] would otherwise fill the gaps (the
        // shipped one audits, and `notation_verification = "audit"` there would let
        // an untrusted signer through a strict statement).
        let mut settings = vec!["mode = \"enforce\"".to_owned()];
        match v.level.as_str() {
            "skip" => settings.push("require = \"any\"".to_owned()),
            l @ ("strict" | "permissive" | "audit") => {
                settings.push("require = \"signed\"".to_owned());
                settings.push("proofs = [\"notation\"]".to_owned());
                settings.push("on_unreachable = \"deny\"".to_owned());
                settings.push(format!("notation_verification = \"{l}\""));
            }
            other => problem(format!(
                "signatureVerification.level {other:?} is not strict, permissive, audit or skip"
            )),
        }
        let mut revocation = None;
        for (check, action) in &v.r#override {
            match (check.as_str(), action.as_str()) {
                ("revocation", "skip" | "log") => revocation = Some("notation_revocation = \"skip\"  # revocation cannot be checked offline"),
                ("revocation", "enforce") => revocation = Some("notation_revocation = \"refuse\"  # offline nodes cannot check revocation: every signature is refused"),
                _ => problem(format!("override {check} = {action:?}: pullguard's levels fix what each check does; only revocation can be set")),
            }
        }
        if v.level != "skip" {
            // The level's own revocation check (enforced by strict, logged by the others)
            // needs the network; what pullguard does instead is said, not implied.
            settings.push(revocation.unwrap_or("notation_revocation = \"skip\"  # Notation's level checks revocation online; pullguard cannot (docs/notation-differences.md)").to_owned());
        }
        match v.verify_timestamp.as_deref() {
            None | Some("always") => {}
            Some(other) => problem(format!("verifyTimestamp {other:?}: pullguard verifies a timestamp whenever the rule has a tsa store (Notation's \"always\")")),
        }
        if v.level != "skip" {
            let mut stores = Vec::new();
            for s in &p.trust_stores {
                let Some((kind @ ("ca" | "signingAuthority" | "tsa"), name)) = s.split_once(':')
                else {
                    problem(format!(
                        "trust store {s:?} is not ca:NAME, signingAuthority:NAME or tsa:NAME"
                    ));
                    continue;
                };
                if let Some(dir) = trust_store {
                    let d = dir.join("x509").join(kind).join(name);
                    if !d.is_dir() {
                        problem(format!("trust store {s}: {} does not exist", d.display()));
                    }
                }
                stores.push(format!("\"{kind}:{name}\""));
            }
            if stores.is_empty() {
                problem("no trust stores".to_owned());
            }
            if p.trusted_identities.is_empty() {
                problem("no trusted identities".to_owned());
            }
            settings.push(format!("notation_trust_stores = [{}]", stores.join(", ")));
            let ids: Vec<String> = p
                .trusted_identities
                .iter()
                .map(|i| format!("{:?}", i))
                .collect();
            settings.push(format!("notation_identities = [{}]", ids.join(", ")));
        }
        for (i, scope) in p.registry_scopes.iter().enumerate() {
            let patterns = if scope == "*" {
                if p.registry_scopes.len() > 1 {
                    problem("the scope \"*\" beside other scopes".to_owned());
                }
                vec!["**".to_owned()]
            } else {
                match ImageRef::parse(&format!("{scope}:x")) {
                    Ok(r) if r.repository() == *scope => {
                        vec![format!("{scope}:*"), format!("{scope}@*")]
                    }
                    Ok(r) => {
                        problem(format!(
                            "registry scope {scope:?} is written {:?} by containerd; write it so",
                            r.repository()
                        ));
                        continue;
                    }
                    Err(e) => {
                        problem(format!("registry scope {scope:?}: {e}"));
                        continue;
                    }
                }
            };
            for (j, pattern) in patterns.iter().enumerate() {
                let name = format!(
                    "{}{}",
                    slug(&p.name),
                    if p.registry_scopes.len() > 1 || patterns.len() > 1 {
                        format!("-{}", i * 2 + j + 1)
                    } else {
                        String::new()
                    }
                );
                let _ = write!(
                    out,
                    "\n[[rule]]\nname = \"{name}\"\nmatch = \"{pattern}\"\n"
                );
                for s in &settings {
                    let _ = writeln!(out, "{s}");
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Why notation-go v1.3.2 would refuse to load `doc` (`trustpolicy.Document.Validate`).
fn notation_refuses(doc: &Document) -> Vec<String> {
    let mut out = Vec::new();
    if doc.trust_policies.is_empty() {
        out.push("no trust policy statements (Notation refuses an empty document)".to_owned());
    }
    let mut names = std::collections::BTreeSet::new();
    let mut scopes: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    for p in &doc.trust_policies {
        let mut refuse = |m: String| {
            out.push(format!(
                "trust policy {:?}: {m} (Notation refuses it)",
                p.name
            ))
        };
        if p.name.is_empty() {
            refuse("a statement without a name".to_owned());
        }
        if !names.insert(p.name.as_str()) {
            refuse("two statements have this name".to_owned());
        }
        let v = &p.signature_verification;
        if v.level == "skip" {
            if !v.r#override.is_empty() {
                refuse("level skip with overrides".to_owned());
            }
            if !p.trust_stores.is_empty() || !p.trusted_identities.is_empty() {
                refuse("level skip with trust stores or trusted identities".to_owned());
            }
        }
        if let Some(t) = &v.verify_timestamp {
            if !["", "always", "afterCertExpiry"].contains(&t.as_str()) {
                refuse(format!("verifyTimestamp {t:?}"));
            }
        }
        for s in &p.trust_stores {
            let name_ok = s.split_once(':').is_some_and(|(_, n)| {
                !n.is_empty()
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            });
            if !name_ok {
                refuse(format!(
                    "trust store {s:?} is not TYPE:NAME with NAME of [a-zA-Z0-9_.-]"
                ));
            }
        }
        for i in &p.trusted_identities {
            if i.is_empty() {
                refuse("an empty trusted identity".to_owned());
            } else if i == "*" {
                if p.trusted_identities.len() > 1 {
                    refuse("the identity \"*\" beside other identities".to_owned());
                }
            } else if !i.contains(':') {
                refuse(format!("trusted identity {i:?} has no TYPE: prefix"));
            } else if !i.starts_with("x509.subject:") {
                // Notation accepts other prefixes unchecked; pullguard cannot say what
                // they mean.
                refuse(format!(
                    "trusted identity {i:?}: only x509.subject identities can be expressed"
                ));
            }
        }
        if let Err(e) = notation_core::dn::check_identities(&p.trusted_identities) {
            refuse(format!("trusted identities: {e}"));
        }
        if p.registry_scopes.is_empty() {
            refuse("no registry scopes".to_owned());
        }
        for scope in &p.registry_scopes {
            if scope != "*" && scope.contains('*') {
                refuse(format!(
                    "registry scope {scope:?} has a wildcard (only \"*\" alone is allowed)"
                ));
            }
            if let Some(other) = scopes.insert(scope.as_str(), p.name.as_str()) {
                refuse(format!(
                    "registry scope {scope:?} is also in statement {other:?}; one scope belongs to one statement"
                ));
            }
        }
    }
    out
}

/// A rule name from a trust policy name.
fn slug(s: &str) -> String {
    let v: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if v.is_empty() {
        "notation".to_owned()
    } else {
        format!("notation-{v}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::convert;

    const ID: &str = "x509.subject: C=US, ST=WA, O=Acme, CN=release";

    fn policy(extra: &str, level: &str) -> String {
        format!(
            r#"{{"version":"1.0","trustPolicies":[{{"name":"prod images","registryScopes":["registry.example.com/prod/app"],"signatureVerification":{{"level":"{level}"{extra}}},"trustStores":["ca:acme"],"trustedIdentities":["{ID}"]}},{{"name":"rest","registryScopes":["*"],"signatureVerification":{{"level":"skip"}}}}]}}"#
        )
    }

    #[test]
    fn levels_scopes_and_stores_become_rules_that_load() {
        let toml = convert(policy("", "permissive").as_bytes(), None).unwrap();
        assert!(
            toml.contains("match = \"registry.example.com/prod/app:*\"")
                && toml.contains("match = \"registry.example.com/prod/app@*\""),
            "{toml}"
        );
        assert!(
            toml.contains("notation_verification = \"permissive\""),
            "{toml}"
        );
        assert!(
            toml.contains("notation_trust_stores = [\"ca:acme\"]"),
            "{toml}"
        );
        assert!(
            toml.contains(&format!("notation_identities = [{ID:?}]")),
            "{toml}"
        );
        assert!(
            toml.contains("match = \"**\"\nmode = \"enforce\"\nrequire = \"any\""),
            "{toml}"
        );
        // What it printed is a policy pullguard loads, meaning what Notation's did.
        let p = policy::Policy::parse(std::path::Path::new("imported.toml"), &toml).unwrap();
        let r = p
            .rule_for(&policy::ImageRef::parse("registry.example.com/prod/app:v1").unwrap())
            .unwrap();
        assert_eq!(
            (r.proofs.as_slice(), r.notation.level.as_str()),
            (&[policy::Proof::Notation][..], "permissive")
        );
        let by_digest = format!("registry.example.com/prod/app@sha256:{}", "a".repeat(64));
        let r = p
            .rule_for(&policy::ImageRef::parse(&by_digest).unwrap())
            .unwrap();
        assert_eq!(
            r.notation.trust_stores,
            vec![("ca".to_owned(), "acme".to_owned())]
        );
        assert_eq!(
            p.rule_for(&policy::ImageRef::parse("alpine").unwrap())
                .unwrap()
                .require,
            policy::Require::Any
        );
        let toml = convert(
            policy(r#","override":{"revocation":"skip"}"#, "strict").as_bytes(),
            None,
        )
        .unwrap();
        assert!(toml.contains("notation_revocation = \"skip\""), "{toml}");
    }

    /// The attack: rules printed without the settings a statement implies took the
    /// `[defaults]` of the file they were appended to; under the shipped file's
    /// `mode = "audit"`, or a `notation_verification = "audit"` there, a strict
    /// statement let an untrusted signer through.
    #[test]
    fn imported_rules_mean_the_same_under_any_defaults() {
        let toml = convert(policy("", "strict").as_bytes(), None).unwrap();
        let lax = "[defaults]\nmode = \"audit\"\nrequire = \"any\"\nnotation_verification = \"audit\"\nnotation_revocation = \"skip\"\non_unreachable = \"cached\"\n";
        for defaults in ["", lax] {
            let p = policy::Policy::parse(
                std::path::Path::new("imported.toml"),
                &format!("{defaults}{toml}"),
            )
            .unwrap();
            let r = p
                .rule_for(&policy::ImageRef::parse("registry.example.com/prod/app:v1").unwrap())
                .unwrap();
            assert_eq!(
                (
                    r.mode,
                    r.require,
                    r.notation.level.as_str(),
                    r.on_unreachable
                ),
                (
                    policy::Mode::Enforce,
                    policy::Require::Signed,
                    "strict",
                    policy::OnUnreachable::Deny
                ),
                "under {defaults:?}"
            );
        }
        // Notation's strict level checks revocation online; the rule says what pullguard
        // does instead rather than leaving it to a default.
        assert!(
            toml.contains(
                "notation_revocation = \"skip\"  # Notation's level checks revocation online"
            ),
            "{toml}"
        );
    }

    #[test]
    fn what_cannot_be_expressed_is_refused_with_its_reason() {
        for (extra, level, words) in [
            (
                r#","override":{"expiry":"log"}"#,
                "strict",
                "override expiry",
            ),
            (
                r#","verifyTimestamp":"afterCertExpiry""#,
                "strict",
                "verifyTimestamp",
            ),
            ("", "lenient", "not strict"),
        ] {
            let e = convert(policy(extra, level).as_bytes(), None)
                .unwrap_err()
                .join("\n");
            assert!(e.contains(words), "{words}: {e}");
        }
        let e = convert(
            policy("", "strict").as_bytes(),
            Some(std::path::Path::new("/nonexistent")),
        )
        .unwrap_err()
        .join("\n");
        assert!(e.contains("ca:acme") && e.contains("does not exist"), "{e}");
        let e = convert(br#"{"version":"2.0","trustPolicies":[]}"#, None)
            .unwrap_err()
            .join("\n");
        assert!(e.contains("only 1.0"), "{e}");
    }

    /// notation_refuses_import_allows: policies notation-go refuses to load once
    /// imported as `require = "any"` rules ahead of the real one, allowing unsigned
    /// images. Each is refused now, with Notation's reason.
    #[test]
    fn trust_policies_notation_refuses_are_refused() {
        let statement = |name: &str, scope: &str, level: &str, rest: &str| {
            format!(
                r#"{{"name":"{name}","registryScopes":["{scope}"],"signatureVerification":{{"level":"{level}"}}{rest}}}"#
            )
        };
        let strict = |name: &str, scope: &str, id: &str| {
            statement(
                name,
                scope,
                "strict",
                &format!(r#","trustStores":["ca:acme"],"trustedIdentities":["{id}"]"#),
            )
        };
        let doc = |statements: &[String]| {
            format!(
                r#"{{"version":"1.0","trustPolicies":[{}]}}"#,
                statements.join(",")
            )
        };
        let app = "registry.example.com/app";
        for (policy, words) in [
            (
                doc(&[
                    statement("open", app, "skip", ""),
                    strict("signed", app, ID),
                ]),
                "also in statement",
            ),
            (
                doc(&[statement(
                    "open",
                    app,
                    "skip",
                    r#","trustStores":["ca:acme"]"#,
                )]),
                "skip with trust stores",
            ),
            (
                doc(&[
                    strict("a", app, ID),
                    strict("a", "registry.example.com/b", ID),
                ]),
                "two statements",
            ),
            (
                doc(&[strict("a", app, "x509.subject: C=US, O=Acme, CN=release")]),
                "no ST",
            ),
            (
                doc(&[strict(
                    "a",
                    app,
                    "x509.subject: C=US, ST=WA, O=Acme, CN=a, CN=b",
                )]),
                "twice",
            ),
            (
                doc(&[strict("a", app, "x509.subject: C=US, ST=WA, O=Acme+O=Evil")]),
                "multi-valued",
            ),
            (
                doc(&[strict("a", app, "other: thing")]),
                "only x509.subject",
            ),
            (
                doc(&[strict("a", "registry.example.com/*", ID)]),
                "wildcard",
            ),
            (doc(&[]), "no trust policy statements"),
        ] {
            let e = convert(policy.as_bytes(), None)
                .expect_err(&policy)
                .join("\n");
            assert!(e.contains(words), "{words}: {e}");
        }
    }
}
