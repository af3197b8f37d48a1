//! sigstore policy-controller's `ClusterImagePolicy`. Its semantics, as its source has them (pkg/apis/glob, pkg/webhook
//! validator.go at f925c0c1): a glob is anchored, `*` is `[^/]*` (it crosses `:` and `@`),
//! `**` is `.*`; `*` alone means `index.docker.io/library/*` and `*/*`
//! `index.docker.io/*/*`; it is matched against go-containerregistry's name of the image
//! (`index.docker.io/library/alpine:latest`, `repo@sha256:…` without the tag), and then,
//! deprecated, against the image as the pod spells it. An image must pass every CIP whose
//! globs match it, and within a CIP any one authority. A keyless authority without a
//! trust root of its own uses the public-good Fulcio and Rekor keys and needs the Rekor
//! entry; a key authority without `ctlog` skips the log. Identity expressions are Go
//! regular expressions matched anywhere in the string (unanchored).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{inline_key, quote, render, slug, unanchored, Converted, Imported, Pattern};

#[derive(Deserialize)]
struct Cip {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    metadata: Metadata,
    spec: Spec,
}

#[derive(Deserialize)]
struct Metadata {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    images: Vec<ImageGlob>,
    #[serde(default)]
    authorities: Vec<Authority>,
    mode: Option<String>,
    policy: Option<serde_yaml_ng::Value>,
    #[serde(rename = "match")]
    matching: Option<serde_yaml_ng::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageGlob {
    glob: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Authority {
    name: Option<String>,
    key: Option<KeyRef>,
    keyless: Option<Keyless>,
    #[serde(rename = "static")]
    fixed: Option<Static>,
    ctlog: Option<CtLog>,
    #[serde(default)]
    source: Vec<serde_yaml_ng::Value>,
    attestations: Option<serde_yaml_ng::Value>,
    #[serde(rename = "rfc3161timestamp")]
    timestamp: Option<serde_yaml_ng::Value>,
    #[serde(rename = "signatureFormat")]
    signature_format: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRef {
    data: Option<String>,
    kms: Option<String>,
    #[serde(rename = "secretRef")]
    secret_ref: Option<serde_yaml_ng::Value>,
    #[serde(rename = "hashAlgorithm")]
    hash_algorithm: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Keyless {
    url: Option<String>,
    #[serde(default)]
    identities: Vec<Identity>,
    #[serde(rename = "ca-cert")]
    ca_cert: Option<serde_yaml_ng::Value>,
    #[serde(rename = "trustRootRef")]
    trust_root_ref: Option<String>,
    #[serde(rename = "insecureIgnoreSCT")]
    insecure_ignore_sct: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Identity {
    issuer: Option<String>,
    subject: Option<String>,
    #[serde(rename = "issuerRegExp")]
    issuer_regexp: Option<String>,
    #[serde(rename = "subjectRegExp")]
    subject_regexp: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CtLog {
    url: Option<String>,
    #[serde(rename = "trustRootRef")]
    trust_root_ref: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Static {
    action: String,
    message: Option<String>,
}

/// `(file name, text)` of each input.
pub(super) fn import(
    texts: &[(String, String)],
    key_dir: Option<&Path>,
) -> Result<Imported, Vec<String>> {
    let mut problems = Vec::new();
    let mut converted = Vec::new();
    let mut keys = Vec::new();
    for (place, value) in super::yaml_documents(texts, &mut problems) {
        let cip: Cip = match serde_yaml_ng::from_value(value) {
            Ok(c) => c,
            Err(e) => {
                problems.push(format!(
                    "{place}: not a ClusterImagePolicy pullguard knows: {e}"
                ));
                continue;
            }
        };
        let mut problem = |m: String| {
            problems.push(format!(
                "{place}: ClusterImagePolicy {}: {m}",
                cip.metadata.name
            ));
        };
        if cip.kind != "ClusterImagePolicy"
            || !matches!(
                cip.api_version.as_str(),
                "policy.sigstore.dev/v1alpha1" | "policy.sigstore.dev/v1beta1"
            )
        {
            problem(format!(
                "{} {} is not a policy.sigstore.dev ClusterImagePolicy (v1alpha1, v1beta1)",
                cip.api_version, cip.kind
            ));
            continue;
        }
        if let Some(c) = convert(&cip, key_dir, &mut keys, &mut problem) {
            converted.push(c);
        }
    }
    // policy-controller checks an image against every CIP that matches it (all must
    // pass); pullguard takes the most specific rule alone. Overlapping globs of two CIPs
    // would drop one CIP's requirements for the images both match.
    render(
        "# Imported from sigstore policy-controller ClusterImagePolicies by `pullguard policy import`.\n# An image no rule matches is rejected, as policy-controller's default no-match policy (deny).\n",
        &converted,
        Some("policy-controller requires both for such an image, a pullguard rule stands alone: merge them into one policy by hand"),
        keys,
        problems,
    )
}

fn convert(
    cip: &Cip,
    key_dir: Option<&Path>,
    keys: &mut Vec<(PathBuf, String)>,
    problem: &mut impl FnMut(String),
) -> Option<Converted> {
    let before = keys.len();
    let mut errs: Vec<String> = Vec::new();
    let name = slug(&cip.metadata.name);
    let spec = &cip.spec;
    if spec.policy.is_some() {
        errs.push("spec.policy (CUE or Rego over the verified statements) cannot be expressed: pullguard checks signatures, not policies over attestations".into());
    }
    if spec.matching.is_some() {
        errs.push("spec.match limits the policy to some Kubernetes resources; a node-side rule applies to every pull: write the rule for the images those resources use".into());
    }
    let mode = match spec.mode.as_deref() {
        None | Some("enforce") => None,
        Some("warn") => Some("mode = \"audit\"  # policy-controller: mode: warn".to_owned()),
        Some(other) => {
            errs.push(format!("spec.mode {other:?} is not enforce or warn"));
            None
        }
    };
    let mut patterns = Vec::new();
    for g in &spec.images {
        match glob(&g.glob) {
            Ok(p) => patterns.push(p),
            Err(e) => errs.push(format!("glob {:?}: {e}", g.glob)),
        }
    }
    if spec.images.is_empty() {
        errs.push("spec.images is empty".into());
    }
    let mut settings: Vec<String> = mode.into_iter().collect();
    let mut notes = Vec::new();
    let mut key_files = Vec::new();
    let mut identities = Vec::new();
    let mut tlog: Option<bool> = None;
    let mut fixed: Option<&str> = None;
    let mut layouts = Vec::new();
    if spec.authorities.is_empty() {
        errs.push("no authorities".into());
    }
    for (i, a) in spec.authorities.iter().enumerate() {
        let which = a
            .name
            .clone()
            .unwrap_or_else(|| format!("authority {}", i + 1));
        let mut refuse = |m: &str| errs.push(format!("{which}: {m}"));
        if a.attestations.is_some() {
            refuse("attestations (in-toto statements and their policies) cannot be expressed: pullguard verifies image signatures only");
        }
        if a.timestamp.is_some() {
            refuse("rfc3161timestamp with a TrustRoot resource of the cluster cannot be expressed: give pullguard that trusted_root.json and write the rule by hand");
        }
        if !a.source.is_empty() {
            refuse("source (another signature repository, pull secrets) cannot be expressed exactly: set signature_repository by hand");
        }
        if let Some(f) = &a.signature_format {
            if f == "bundle" {
                layouts.push(which.clone());
            } else {
                refuse(&format!("signatureFormat {f:?} is not bundle"));
            }
        }
        let kinds = [a.key.is_some(), a.keyless.is_some(), a.fixed.is_some()];
        if kinds.iter().filter(|k| **k).count() != 1 {
            refuse("an authority needs exactly one of key, keyless and static");
            continue;
        }
        if let Some(s) = &a.fixed {
            match s.action.as_str() {
                "pass" | "fail" if spec.authorities.len() == 1 => {
                    fixed = Some(if s.action == "pass" { "any" } else { "reject" })
                }
                "pass" | "fail" => refuse("static beside other authorities"),
                other => refuse(&format!("static action {other:?} is not pass or fail")),
            }
            if let Some(m) = &s.message {
                notes.push(format!(
                    "policy-controller's message: {}",
                    m.replace('\n', " ")
                ));
            }
            continue;
        }
        // The transparency log: keyless always needs it (public-good Rekor keys, offline);
        // a key needs it only with ctlog.
        let needs_log = a.keyless.is_some() || a.ctlog.is_some();
        if let Some(c) = &a.ctlog {
            if c.trust_root_ref.is_some() {
                refuse("ctlog.trustRootRef names a TrustRoot resource of the cluster: give pullguard its trusted_root.json and write the rule by hand");
            }
            if let Some(u) = &c.url {
                if u.trim_end_matches('/') != "https://rekor.sigstore.dev" {
                    notes.push(format!("ctlog.url {u}: policy-controller asks that log but checks its entries with the public-good Rekor keys; pullguard checks the entry in the signature (never asks a log) against the same keys"));
                }
            }
        }
        match tlog {
            Some(t) if t != needs_log => refuse("a key authority without ctlog (no transparency log) beside one that needs the log: one pullguard rule has one cosign_tlog; split the CIP by hand"),
            _ => tlog = Some(needs_log),
        }
        if let Some(k) = &a.key {
            if k.kms.is_some() {
                refuse("key.kms: pullguard reads public keys from files; export the KMS key's public key and write the rule by hand");
            }
            if k.secret_ref.is_some() {
                refuse("key.secretRef names a Kubernetes Secret pullguard cannot read: put the public key in key.data, or write the rule by hand");
            }
            if k.hash_algorithm.as_deref().is_some_and(|h| h != "sha256") {
                refuse("key.hashAlgorithm other than sha256 cannot be expressed");
            }
            if let Some(pem) = &k.data {
                match inline_key(pem, key_dir, format!("{name}-{}.pub", i + 1), keys) {
                    Ok(path) => key_files.push(path),
                    Err(e) => refuse(&format!("key.data: {e}")),
                }
            }
        }
        if let Some(k) = &a.keyless {
            if k.ca_cert.is_some() || k.trust_root_ref.is_some() {
                refuse("keyless with a Fulcio CA of its own (ca-cert, trustRootRef) cannot be imported: give pullguard that instance's trusted_root.json and write the rule by hand");
            }
            if k.insecure_ignore_sct == Some(true) {
                refuse("keyless.insecureIgnoreSCT: pullguard always checks the certificate's SCT");
            }
            if let Some(u) = &k.url {
                if u.trim_end_matches('/') != "https://fulcio.sigstore.dev" {
                    notes.push(format!("keyless.url {u}: policy-controller verifies certificates against the public-good Fulcio roots whatever the url (no trustRootRef); so does the rule"));
                }
            }
            if k.identities.is_empty() {
                refuse("keyless without identities");
            }
            for id in &k.identities {
                match identity(id) {
                    Ok((toml, note)) => {
                        identities.push(toml);
                        notes.extend(note);
                    }
                    Err(e) => refuse(&e),
                }
            }
        }
    }
    if !errs.is_empty() {
        keys.truncate(before);
        for e in errs {
            problem(e);
        }
        return None;
    }
    match fixed {
        Some(require) => settings.push(format!(
            "require = \"{require}\"  # policy-controller: static {}",
            if require == "any" { "pass" } else { "fail" }
        )),
        None => {
            settings.push("proofs = [\"cosign\"]".to_owned());
            super::cosign_settings(
                &mut settings,
                &key_files,
                &identities,
                tlog.unwrap_or(false),
            );
            if layouts.len() != spec.authorities.len() {
                notes.push("policy-controller reads only cosign's classic layout here (no signatureFormat: bundle); pullguard also accepts the same signer's signature as a Sigstore bundle".to_owned());
            } else {
                notes.push("policy-controller reads only Sigstore bundles here (signatureFormat: bundle); pullguard also accepts the same signer's signature in cosign's classic layout".to_owned());
            }
        }
    }
    Some(Converted {
        what: format!("ClusterImagePolicy {}", cip.metadata.name),
        name,
        patterns,
        settings,
        notes,
    })
}

/// A policy-controller glob as a pullguard pattern.
fn glob(g: &str) -> Result<Pattern, String> {
    let g = match g {
        "*/*" => "index.docker.io/*/*",
        "*" => "index.docker.io/library/*",
        g => g,
    };
    if g.is_empty()
        || !g
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_:/*.@".contains(c))
    {
        return Err("policy-controller refuses it (letters, digits and -_:/*.@ only)".into());
    }
    // ggcr's names always have a '/': a glob that cannot match one only ever matched the
    // image as a pod spells it (policy-controller's deprecated fallback).
    let fallback_only = "it matches only through policy-controller's deprecated fallback to the image as a pod spells it, which depends on how each pod writes the name; write it fully qualified (index.docker.io/library/NAME…)";
    if !g.contains('/') && !g.contains("**") {
        return Err(fallback_only.into());
    }
    let (first, rest) = g.split_once('/').unwrap_or((g, ""));
    let (pattern, any_registry) = if first == "index.docker.io" {
        (format!("docker.io/{rest}"), false)
    } else if first.contains('*') {
        (g.to_owned(), true)
    } else if first == "docker.io" || !(first.contains(['.', ':']) || first == "localhost") {
        // ggcr writes Docker Hub as index.docker.io, and a first part without '.' or ':'
        // is a Docker Hub repository, not a registry.
        return Err(fallback_only.into());
    } else {
        (g.to_owned(), false)
    };
    // A last part with no tag, digest or wildcard matched only an untagged spelling
    // (ggcr's name carries `:latest`), which pullguard sees as `:latest`.
    let last = pattern.rsplit('/').next().unwrap_or("");
    if !last.contains([':', '@', '*']) {
        return Ok(Pattern {
            glob: format!("{pattern}:latest"),
            any_registry,
            note: Some(format!("policy-controller matched {g:?} only where a pod names the image without a tag; pullguard sees that as :latest (and also applies the rule to an explicit :latest)")),
        });
    }
    Ok(Pattern {
        glob: pattern,
        any_registry,
        note: None,
    })
}

/// An identity as TOML, with a note where policy-controller is laxer than it reads.
fn identity(id: &Identity) -> Result<(String, Option<String>), String> {
    let mut parts = Vec::new();
    let mut laxer = Vec::new();
    match (&id.issuer, &id.issuer_regexp) {
        (Some(i), None) if !i.is_empty() => parts.push(format!("issuer = {}", quote(i))),
        (None, Some(r)) if !r.is_empty() => {
            parts.push(format!("issuer_regex = {}", quote(&unanchored(r)?)));
            laxer.push(format!("issuerRegExp {r:?}"));
        }
        _ => return Err("each identity needs issuer or issuerRegExp (one of them)".into()),
    }
    match (&id.subject, &id.subject_regexp) {
        (Some(s), None) if !s.is_empty() => parts.push(format!("subject = {}", quote(s))),
        (None, Some(r)) if !r.is_empty() => {
            parts.push(format!("subject_regex = {}", quote(&unanchored(r)?)));
            laxer.push(format!("subjectRegExp {r:?}"));
        }
        _ => return Err("each identity needs subject or subjectRegExp (one of them)".into()),
    }
    let note = (!laxer.is_empty()).then(|| {
        format!(
            "{}: policy-controller matches these anywhere in the string (unanchored), so they accept more than they read (an issuer or SAN merely containing a match); kept so here. Anchor them (^…$) once you have checked what your signers use",
            laxer.join(", ")
        )
    });
    Ok((format!("{{ {} }}", parts.join(", ")), note))
}
