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
    let mut out = String::from("# Imported from a Notation trust policy by `pullguard policy import-notation`.\n# Copy Notation's truststore directory to KEYS_DIR/notation/truststore (x509/TYPE/NAME/).\n");
    for p in &doc.trust_policies {
        let mut problem = |m: String| problems.push(format!("trust policy {:?}: {m}", p.name));
        let v = &p.signature_verification;
        let mut settings = Vec::new();
        match v.level.as_str() {
            "skip" => settings.push("require = \"any\"".to_owned()),
            l @ ("strict" | "permissive" | "audit") => {
                settings.push("proofs = [\"notation\"]".to_owned());
                if l != "strict" {
                    settings.push(format!("notation_verification = \"{l}\""));
                }
            }
            other => problem(format!(
                "signatureVerification.level {other:?} is not strict, permissive, audit or skip"
            )),
        }
        for (check, action) in &v.r#override {
            match (check.as_str(), action.as_str()) {
                ("revocation", "skip" | "log") => settings.push("notation_revocation = \"skip\"  # revocation cannot be checked offline".to_owned()),
                ("revocation", "enforce") => settings.push("notation_revocation = \"refuse\"  # offline nodes cannot check revocation: every signature is refused".to_owned()),
                _ => problem(format!("override {check} = {action:?}: pullguard's levels fix what each check does; only revocation can be set")),
            }
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
        assert!(toml.contains("match = \"**\"\nrequire = \"any\""), "{toml}");
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
}
