//! What a Kyverno attestor or image reference becomes on pullguard's side: Notation trust
//! stores, certificates, patterns and keyless identities, each as Kyverno reads them.

use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use super::super::{quote, unanchored, Pattern};

/// A Notary attestor set's entries as Notation trust stores, one per entry, each the
/// entry's `cert` and `certChain` as Kyverno builds it (a `ca` store, trusted identity
/// `*`, level strict), written under `KEY_DIR/notation/truststore/x509/ca/`.
pub(super) fn notary_stores(
    entries: &[(Value, Option<String>)],
    key_dir: Option<&Path>,
    rule_id: &str,
    files: &mut Vec<(PathBuf, String)>,
    mut errs: Vec<String>,
) -> Result<(Vec<String>, Vec<String>), Vec<String>> {
    let mut stores = Vec::new();
    for (n, (e, _)) in entries.iter().enumerate() {
        let at = format!("attestor entry {}", n + 1);
        let Some(c) = e.get("certificates") else {
            errs.push(format!("{at}: a Notary attestor has certificates (Kyverno refuses keys, keyless and nested attestors there)"));
            continue;
        };
        for k in ["attestor", "annotations", "keys", "keyless"] {
            if e.get(k).is_some() {
                errs.push(format!("{at}: {k} cannot be expressed"));
            }
        }
        let mut pem = String::new();
        let mut given = false;
        for k in ["cert", "certChain"] {
            let Some(text) = c
                .get(k)
                .and_then(Value::as_str)
                .filter(|t| !t.trim().is_empty())
            else {
                continue;
            };
            given = true;
            if text.contains("{{") {
                continue; // reported with the policy: a variable
            }
            match certificates(text) {
                Ok(p) => pem.push_str(&p),
                Err(m) => errs.push(format!("{at}: certificates.{k}: {m}")),
            }
        }
        if pem.is_empty() {
            if !given {
                errs.push(format!("{at}: certificates without cert or certChain"));
            }
            continue;
        }
        let name = format!("{rule_id}-{}", n + 1);
        let Some(dir) = key_dir else {
            errs.push("name where the trust stores go with --key-dir DIR (pullguardd's keys_dir: the rules name stores under DIR/notation/truststore)".to_owned());
            break;
        };
        files.push((
            dir.join("notation/truststore/x509/ca")
                .join(&name)
                .join("kyverno.pem"),
            pem,
        ));
        stores.push(format!("\"ca:{name}\""));
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    let where_ = key_dir.map(|d| d.display().to_string()).unwrap_or_default();
    Ok((
        vec![
            format!("notation_trust_stores = [{}]", stores.join(", ")),
            "notation_identities = [\"*\"]".to_owned(),
        ],
        vec![
            format!("the trust stores are written under {where_}/notation/truststore: pullguardd reads them from its keys_dir, so {where_} must be that directory"),
            "Kyverno's notation-go checks revocation online (OCSP, CRL) where a certificate names a responder; pullguard does not (notation_revocation = \"skip\", docs/policy.md: Notation on offline nodes)".to_owned(),
            "Kyverno tries at most 10 signatures of an image; pullguard tries every one up to its own bound".to_owned(),
        ],
    ))
}

/// PEM certificates (or base64 of PEM, which Kyverno also takes), each a certificate
/// notation-go accepts in a `ca` store: a CA or a self-signed certificate.
pub(super) fn certificates(text: &str) -> Result<String, String> {
    use base64::Engine as _;
    let text = text.trim();
    let pem = if text.starts_with("-----BEGIN") {
        text.to_owned()
    } else {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.split_whitespace().collect::<String>())
            .map_err(|_| "neither PEM nor base64 of PEM".to_owned())?;
        String::from_utf8(bytes).map_err(|_| "base64 of something other than PEM".to_owned())?
    };
    let ders = sigstore_core::keys::pem_blocks(pem.as_bytes(), "CERTIFICATE")
        .map_err(|e| format!("not PEM certificates: {e}"))?;
    if ders.is_empty() {
        return Err("no PEM certificate".to_owned());
    }
    for d in &ders {
        let cert =
            sigstore_core::certs::Cert::parse(d).map_err(|e| format!("not a certificate: {e}"))?;
        notation_core::profile::check_store_certificate(
            &cert,
            notation_core::profile::StoreKind::Signing,
        )
        .map_err(|e| {
            format!("{e} (notation-go refuses such a trust store, so Kyverno refuses every image)")
        })?;
    }
    Ok(format!("{}\n", pem.trim_end()))
}

/// An imageReferences pattern as a pullguard pattern, where the two name the same images.
pub(super) fn pattern(p: &str) -> Result<Pattern, String> {
    if p == "*" {
        return Ok(Pattern {
            glob: "**".to_owned(),
            any_registry: false,
            note: None,
        });
    }
    if p.contains('?') {
        return Err("Kyverno's ? matches any one character, / included; pullguard's stays within a path part".to_owned());
    }
    let host = p.split('/').next().unwrap_or("");
    if !p.contains('/') || host.contains('*') {
        return Err("a pattern whose registry is a wildcard also meets Docker Hub images, which Kyverno spells without library/ (docker.io/nginx) and pullguard with it: write one pattern per registry".to_owned());
    }
    if host == "docker.io" || !(host.contains(['.', ':']) || host == "localhost") {
        return Err("Kyverno spells Docker Hub's official images without library/ (nginx is docker.io/nginx:latest there, docker.io/library/nginx:latest for containerd and pullguard), so which images it meets depends on how each pod writes them: refused".to_owned());
    }
    // Kyverno's * crosses /: pullguard's **.
    let mut glob = String::new();
    let mut last_star = false;
    for c in p.chars() {
        if c == '*' {
            if !last_star {
                glob.push_str("**");
            }
            last_star = true;
        } else {
            glob.push(c);
            last_star = false;
        }
    }
    Ok(Pattern {
        glob,
        any_registry: false,
        note: None,
    })
}

/// A keyless entry's identities as TOML (several when subject and subjectRegExp are
/// both given: either may match), with a note where Kyverno is laxer than it reads.
pub(super) fn identity(k: &Value) -> Result<(Vec<String>, Option<String>), String> {
    let s = |key: &str| k.get(key).and_then(Value::as_str).filter(|v| !v.is_empty());
    let issuer = match (s("issuer"), s("issuerRegExp")) {
        (Some(i), None) if !i.contains(['*', '?']) => format!("issuer = {}", quote(i)),
        (Some(i), None) => format!("issuer_regex = {}", quote(&wildcard(i))),
        (None, Some(r)) => format!("issuer_regex = {}", quote(&unanchored(r)?)),
        (None, None) => "issuer_regex = \"(?s:.*)\"".to_owned(),
        (Some(_), Some(_)) => {
            return Err(
                "issuer and issuerRegExp must both match; pullguard names one issuer condition"
                    .to_owned(),
            )
        }
    };
    let mut subjects = Vec::new();
    if let Some(w) = s("subject") {
        subjects.push(if w.contains(['*', '?']) {
            format!("subject_regex = {}", quote(&wildcard(w)))
        } else {
            format!("subject = {}", quote(w))
        });
    }
    if let Some(r) = s("subjectRegExp") {
        subjects.push(format!("subject_regex = {}", quote(&unanchored(r)?)));
    }
    let mut note = Vec::new();
    if subjects.is_empty() {
        subjects.push("subject_regex = \"(?s:.*)\"".to_owned());
        note.push(if s("issuer").is_none() && s("issuerRegExp").is_none() {
            "no subject and no issuer: Kyverno accepts a signature by anyone Sigstore's public Fulcio issued a certificate to (any e-mail address, any CI job); kept so here. Name your signer".to_owned()
        } else {
            "no subject: every identity of that issuer passes (on GitHub Actions: every repository's workflows); kept so here. Name your signer".to_owned()
        });
    }
    let laxer: Vec<String> = ["subjectRegExp", "issuerRegExp"]
        .iter()
        .filter_map(|key| s(key).map(|v| format!("{key} {v:?}")))
        .collect();
    if !laxer.is_empty() {
        note.push(format!("{}: Kyverno matches these anywhere in the string (unanchored), so they accept more than they read; kept so here. Anchor them once you have checked your signers", laxer.join(", ")));
    }
    note.push("Kyverno reads the issuer from the certificate's first OIDC-issuer extension only; pullguard reads both and refuses a certificate in which they disagree".to_owned());
    Ok((
        subjects
            .into_iter()
            .map(|sub| format!("{{ {issuer}, {sub} }}"))
            .collect(),
        Some(note.join("; ")),
    ))
}

/// go-wildcard's pattern as an anchored regular expression: `*` any run, `?` one
/// character, everything else literally.
fn wildcard(w: &str) -> String {
    let mut re = String::new();
    for c in w.chars() {
        match c {
            '*' => re.push_str("(?s:.*)"),
            '?' => re.push_str("(?s:.)"),
            c => re.push_str(&regex_escape(c)),
        }
    }
    re
}

fn regex_escape(c: char) -> String {
    if "\\.+*?()|[]{}^$".contains(c) {
        format!("\\{c}")
    } else {
        c.to_string()
    }
}
