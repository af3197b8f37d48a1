//! The proof kinds' parts of a rule (cosign, Notation): whose signatures count, with
//! what evidence, each checked where it is written.

use std::path::PathBuf;

use super::parse::{or, Ctx, RawRule};
use super::*;

/// A rule's cosign settings. A rule that accepts cosign must say whose signatures count;
/// transparency-log evidence is required unless it says otherwise.
pub(crate) fn cosign_rule(
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
pub(crate) fn notation_rule(
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
    let level = match or(&r.notation_verification, &defaults.notation_verification) {
        None => NotationLevel::Strict,
        Some(l) => NotationLevel::ALL
            .into_iter()
            .find(|k| k.as_str() == l)
            .unwrap_or_else(|| {
                problem(format!("notation_verification {l:?} is not strict, permissive or audit (skip is require = \"any\")"));
                NotationLevel::Strict
            }),
    };
    let revocation = match or(&r.notation_revocation, &defaults.notation_revocation).as_deref() {
        None | Some("skip") => Revocation::Skip,
        Some("refuse") => Revocation::Refuse,
        Some(other) => {
            problem(format!(
                "notation_revocation {other:?} is not skip or refuse"
            ));
            Revocation::Skip
        }
    };
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
