//! A rule: the kinds of proof it accepts, each kind's settings, and how a rule is read
//! from the file (its own keys, else `[defaults]`'s, each checked where it is written).
//!
//! Everything a kind of proof adds to the policy lives here: its `Proof` value, its
//! settings (`CosignRule`, `NotationRule`), their keys in `RawRule` and the function that
//! reads them. The engine's side of a kind is its module and its line in `kinds!`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::glob::Glob;
use super::merge::{or, signer_set};
use super::parse::Ctx;
use super::{ImageRef, Mode, OnUnreachable, Require, TrustServer};

/// A kind of proof a rule accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Proof {
    /// Docker Content Trust: Notary v1 / TUF metadata.
    #[serde(rename = "notary-v1")]
    NotaryV1,
    /// Sigstore cosign signatures stored in the image's registry.
    #[serde(rename = "cosign")]
    Cosign,
    /// Notary Project (Notation) signatures stored in the image's registry.
    #[serde(rename = "notation")]
    Notation,
}

impl Proof {
    /// The name the policy file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Proof::NotaryV1 => "notary-v1",
            Proof::Cosign => "cosign",
            Proof::Notation => "notation",
        }
    }
}

/// How many of a rule's `proofs` must vouch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProofsRequired {
    /// Every kind listed, each for the same digest.
    All,
    /// One of them (tried in the order listed).
    Any,
}

impl ProofsRequired {
    /// The name the policy file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ProofsRequired::All => "all",
            ProofsRequired::Any => "any",
        }
    }
}

/// What a rule accepts as a cosign signature.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CosignRule {
    /// Public key files (PEM); relative paths are under the keys directory.
    pub keys: Vec<PathBuf>,
    /// Transparency-log evidence is required (the default).
    pub tlog: bool,
    /// The signed `docker-reference` must name the pulled repository.
    pub check_reference: bool,
    /// Where signatures are stored, `HOST/PATH`, when not beside the image (cosign's
    /// `COSIGN_REPOSITORY`).
    pub signature_repository: Option<String>,
    /// Keyless signers accepted: Fulcio certificates of these identities.
    pub identities: Vec<CosignIdentity>,
    /// Sigstore's `trusted_root.json` (relative paths are under the keys directory).
    pub trusted_root: Option<PathBuf>,
}

/// What a rule accepts as a Notation signature (the Notary Project's trust policy, in
/// pullguard's words).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NotationRule {
    /// Trust stores `TYPE:NAME` (`ca`, `signingAuthority`, `tsa`), read from
    /// `keys_dir/notation/truststore/x509/TYPE/NAME/`.
    pub trust_stores: Vec<(String, String)>,
    /// Trusted identities: `x509.subject: DN` or `*`.
    pub identities: Vec<String>,
    /// How strictly Notation's checks refuse.
    pub level: NotationLevel,
    /// What a signature whose revocation cannot be checked gets.
    pub revocation: Revocation,
}

/// `notation_verification`: Notation's verification levels (`skip` is `require = "any"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotationLevel {
    /// Every check refuses.
    #[default]
    Strict,
    /// Expiry and revocation are only logged.
    Permissive,
    /// Only integrity refuses; trust and identity failures are logged.
    Audit,
}

impl NotationLevel {
    /// Every level, in the order operators read them.
    pub const ALL: [NotationLevel; 3] = [
        NotationLevel::Strict,
        NotationLevel::Permissive,
        NotationLevel::Audit,
    ];

    /// As written in the policy.
    pub fn as_str(self) -> &'static str {
        match self {
            NotationLevel::Strict => "strict",
            NotationLevel::Permissive => "permissive",
            NotationLevel::Audit => "audit",
        }
    }
}

impl fmt::Display for NotationLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `notation_revocation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Revocation {
    /// Revocation is not checked (an offline node cannot).
    #[default]
    Skip,
    /// A signature whose revocation cannot be checked does not count.
    Refuse,
}

impl Revocation {
    /// As written in the policy.
    pub fn as_str(self) -> &'static str {
        match self {
            Revocation::Skip => "skip",
            Revocation::Refuse => "refuse",
        }
    }
}

/// A keyless signer: the certificate's OIDC issuer and its SAN, each exactly or by an
/// anchored regular expression (checked when the policy is prepared).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosignIdentity {
    /// The OIDC issuer, exactly (`https://token.actions.githubusercontent.com`).
    pub issuer: Option<String>,
    /// The OIDC issuer matches this expression as a whole (instead of `issuer`).
    pub issuer_regex: Option<String>,
    /// The SAN, exactly.
    pub subject: Option<String>,
    /// The SAN matches this expression as a whole.
    pub subject_regex: Option<String>,
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
    /// How many of them must vouch.
    pub proofs_required: ProofsRequired,
    /// cosign's settings (used when `proofs` lists it).
    pub cosign: CosignRule,
    /// Notation's settings (used when `proofs` lists it).
    pub notation: NotationRule,
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
    /// Whether the rule's own text names signers (keys, identities, stores, root pins):
    /// under a `require` other than `signed` they are never asked, which the lint says.
    pub names_signers: bool,
    pub(crate) glob: Glob,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub(crate) name: Option<Spanned<String>>,
    #[serde(rename = "match")]
    pub(crate) pattern: Option<Spanned<String>>,
    pub(crate) any_registry: Option<Spanned<bool>>,
    pub(crate) mode: Option<Mode>,
    pub(crate) require: Option<Require>,
    pub(crate) proofs: Option<Vec<Proof>>,
    pub(crate) proofs_required: Option<ProofsRequired>,
    pub(crate) cosign_keys: Option<Vec<String>>,
    pub(crate) cosign_tlog: Option<bool>,
    pub(crate) cosign_check_reference: Option<bool>,
    pub(crate) signature_repository: Option<Spanned<String>>,
    pub(crate) cosign_identities: Option<Vec<CosignIdentity>>,
    pub(crate) notation_trust_stores: Option<Vec<String>>,
    pub(crate) notation_identities: Option<Vec<String>>,
    pub(crate) notation_verification: Option<String>,
    pub(crate) notation_revocation: Option<String>,
    pub(crate) trusted_root: Option<String>,
    pub(crate) trust_server: Option<Spanned<String>>,
    pub(crate) roles: Option<Vec<String>>,
    pub(crate) roles_required: Option<Spanned<usize>>,
    pub(crate) max_timestamp_age: Option<Spanned<String>>,
    pub(crate) on_unreachable: Option<OnUnreachable>,
    pub(crate) tofu: Option<bool>,
    pub(crate) root_key_ids: Option<Vec<Spanned<String>>>,
    pub(crate) root_cas: Option<Vec<String>>,
    pub(crate) root_certs: Option<Vec<String>>,
}

pub(crate) fn build_rule(
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
        if !r.any_registry.as_ref().is_some_and(|a| *a.get_ref()) {
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
    for (i, role) in roles.iter().enumerate() {
        if role != "targets" && !role.starts_with("targets/") {
            ctx.at(
                at,
                format!("rule {name}: role {role:?} is not targets or a targets/ delegation"),
            );
        }
        // Listed twice, one role would count twice towards roles_required.
        if roles[..i].contains(role) {
            ctx.at(
                at,
                format!("rule {name}: role {role:?} is listed twice in roles; each role counts once towards roles_required"),
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
    let pins = signer_set(r, defaults, |x| {
        x.root_key_ids.is_some() || x.root_cas.is_some() || x.root_certs.is_some()
    });
    if super::merge::drops_default_pins(r, defaults, pins) {
        ctx.at(
            at,
            format!("rule {name}: its root_key_ids / root_cas / root_certs are empty, so it pins nothing and drops the pins [defaults] names; remove the empty lists to keep the defaults' pins, or name this rule's own"),
        );
    }
    let root_key_ids: Vec<String> = pins
        .root_key_ids
        .clone()
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
        names_signers: r.cosign_keys.is_some()
            || r.cosign_identities.is_some()
            || r.notation_trust_stores.is_some()
            || r.notation_identities.is_some()
            || r.root_key_ids.is_some()
            || r.root_cas.is_some()
            || r.root_certs.is_some(),
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
        root_cas: pins
            .root_cas
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        root_certs: pins
            .root_certs
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        glob,
    })
}

/// The registry part of `pattern` when a wildcard in it can match another host than
/// the one written (a port wildcard, `127.0.0.1:*`, names one host; the catch-all `**`
/// is a rule for every registry by its nature, and says so). A pattern without a `/`
/// is all registry part: `registry.example.com**` reaches past the host's name too.
pub(crate) fn crosses_hosts(pattern: &str) -> Option<&str> {
    if pattern == "**" {
        return None;
    }
    let host = pattern.split_once('/').map_or(pattern, |(host, _)| host);
    let name = host.split_once(':').map_or(host, |(n, _)| n);
    name.contains(['*', '?', '[']).then_some(host)
}

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
    let signers = signer_set(r, defaults, |x| {
        x.cosign_keys.is_some() || x.cosign_identities.is_some()
    });
    let keys: Vec<PathBuf> = signers
        .cosign_keys
        .clone()
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
    let identities = signers.cosign_identities.clone().unwrap_or_default();
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
    // Stores and identities narrow each other (a signature needs both), so each is
    // taken on its own, unlike cosign's keys and identities, either of which suffices.
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
