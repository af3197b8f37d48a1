//! containers-policy.json (podman, skopeo, CRI-O through github.com/containers/image): its
//! `docker` transport as pullguard rules. Its semantics, as containers/image has them
//! (signature/policy_*.go, docker/policyconfiguration at df7e80d2):
//!
//! - The one most specific scope decides: the reference with its tag or digest, the
//!   repository, each parent namespace, `host[:port]`, then `*.domain` wildcards (any port,
//!   never the apex), then the transport's `""`, then `default`. Scopes are written fully
//!   normalised (`docker.io/library/busybox`); any other spelling silently never matches.
//!   pullguard's precedence (an exact pattern, then the longest literal prefix, then the
//!   most literal characters) ranks the patterns below in the same order.
//! - A scope's requirements must all pass. `insecureAcceptAnything` passes, `reject` and
//!   `signedBaseLayer` (not implemented there) refuse, `signedBy` is GPG.
//! - `sigstoreSigned` reads cosign's classic `.sig` tags (only where registries.d enables
//!   sigstore attachments): any of its keys, or a Fulcio certificate with an exact OIDC
//!   issuer and e-mail SAN at the time of a Rekor SET; the SET is required exactly when
//!   a Rekor key is configured. Its default `signedIdentity`, `matchRepoDigestOrExact`,
//!   refuses cosign's repository-only `docker-reference`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use super::{inline_key, quote, render, slug, Converted, Imported, Pattern};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    default: Vec<serde_json::Value>,
    #[serde(default)]
    transports: BTreeMap<String, BTreeMap<String, Vec<serde_json::Value>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Sigstore {
    #[allow(dead_code)] // "sigstoreSigned", matched before
    r#type: String,
    key_path: Option<String>,
    key_paths: Option<Vec<String>>,
    key_data: Option<String>,
    key_datas: Option<Vec<String>>,
    fulcio: Option<Fulcio>,
    pki: Option<serde_json::Value>,
    rekor_public_key_path: Option<String>,
    rekor_public_key_paths: Option<Vec<String>>,
    rekor_public_key_data: Option<String>,
    rekor_public_key_datas: Option<Vec<String>>,
    signed_identity: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Fulcio {
    ca_path: Option<String>,
    ca_data: Option<String>,
    oidc_issuer: String,
    subject_email: String,
}

/// `(file name, text)` of each input; `key_dir`: where inline keys are written.
pub(super) fn import(
    texts: &[(String, String)],
    key_dir: Option<&Path>,
) -> Result<Imported, Vec<String>> {
    let mut problems = Vec::new();
    let mut converted = Vec::new();
    let mut keys = Vec::new();
    let mut ignored = Vec::new();
    for (file, text) in texts {
        // containers/image refuses a file with a key twice; serde keeps the last.
        if let Err(e) = no_duplicate_keys(text) {
            problems.push(format!(
                "{file}: {e} (containers/image refuses the whole file)"
            ));
            continue;
        }
        let doc: Document = match serde_json::from_str(text) {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!(
                    "{file}: not a containers-policy.json containers/image would load: {e}"
                ));
                continue;
            }
        };
        let mut problem = |m: String| problems.push(format!("{file}: {m}"));
        let docker = doc.transports.get("docker");
        ignored.extend(doc.transports.keys().filter(|t| *t != "docker").cloned());
        let mut scopes: Vec<(&str, &Vec<serde_json::Value>)> = docker
            .map(|d| d.iter().map(|(k, v)| (k.as_str(), v)).collect())
            .unwrap_or_default();
        // No "" scope: the global default decides for docker images no scope matches.
        if !scopes.iter().any(|(s, _)| s.is_empty()) {
            scopes.push(("", &doc.default));
        }
        for (scope, requirements) in scopes {
            let what = if scope.is_empty() {
                "the docker transport's default".to_owned()
            } else {
                format!("scope {scope:?}")
            };
            let mut errs = Vec::new();
            let patterns = patterns(scope).unwrap_or_else(|e| {
                errs.push(e);
                Vec::new()
            });
            let name = if scope.is_empty() {
                "containers-default".to_owned()
            } else {
                slug(scope.trim_start_matches("*."))
            };
            let settings =
                requirements_to_settings(requirements, key_dir, &name, &mut keys, &mut errs);
            if !errs.is_empty() {
                for e in errs {
                    problem(format!("{what}: {e}"));
                }
                continue;
            }
            let (settings, notes) = settings;
            converted.push(Converted {
                what: format!("containers-policy.json, {what}"),
                name,
                patterns,
                settings,
                notes,
            });
        }
    }
    ignored.sort();
    ignored.dedup();
    let mut header = String::from("# Imported from containers-policy.json by `pullguard policy import`: the docker transport.\n");
    if !ignored.is_empty() {
        header.push_str(&format!(
            "# Not imported (containerd pulls over the docker transport only): transports {}.\n",
            ignored.join(", ")
        ));
    }
    // The most specific scope alone decides, as the most specific pullguard rule does.
    render(&header, &converted, None, keys, problems)
}

/// A scope as pullguard patterns that match exactly the references containers/image
/// would look it up for.
fn patterns(scope: &str) -> Result<Vec<Pattern>, String> {
    let plain = |glob: String| Pattern {
        glob,
        any_registry: false,
        note: None,
    };
    if scope.is_empty() {
        return Ok(vec![plain("**".to_owned())]);
    }
    if let Some(domain) = scope.strip_prefix("*.") {
        if domain.is_empty() || domain.contains(['*', '/', ':', '@']) {
            return Err("a wildcard scope is *.DOMAIN (no port, path or other wildcard); containers/image never matches this one".to_owned());
        }
        // Any subdomain, any port, never the apex.
        return Ok(["/**", ":*/**"]
            .iter()
            .map(|rest| Pattern {
                glob: format!("*.{domain}{rest}"),
                any_registry: true,
                note: None,
            })
            .collect());
    }
    // containers/image compares scopes as strings with normalised references: a scope
    // spelled otherwise is accepted there and never matches.
    let never = |why: &str| {
        Err(format!(
            "containers/image never matches it ({why}; scopes are written as containers/image normalises references, e.g. docker.io/library/busybox)"
        ))
    };
    let (name, exact) = match scope.rsplit_once('@') {
        Some((name, digest)) => {
            let hex = digest.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64
                || !hex
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            {
                return never("not a sha256 digest");
            }
            (name, true)
        }
        None => match scope.rsplit_once('/') {
            Some((head, last)) => match last.split_once(':') {
                Some((repo, tag)) if !tag.is_empty() => {
                    (&scope[..head.len() + 1 + repo.len()], true)
                }
                Some(_) => return never("an empty tag"),
                None => (scope, false),
            },
            None => (scope, false),
        },
    };
    let host = name.split('/').next().unwrap_or("");
    if !(host.contains(['.', ':']) || host == "localhost") {
        return never("its first part is not a registry host");
    }
    if host == "index.docker.io" {
        return never("Docker Hub is docker.io there");
    }
    let ok_host = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b));
    let ok_path = name.split('/').skip(1).all(|c| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    });
    if !ok_host || !ok_path {
        return never("a reference cannot be spelled so");
    }
    if exact {
        // A reference: exactly that image.
        return Ok(vec![plain(scope.to_owned())]);
    }
    if !name.contains('/') {
        // A registry host (port and all): everything on it.
        return Ok(vec![plain(format!("{scope}/**"))]);
    }
    // A repository, namespace or host: its images by tag or digest, and everything under it.
    Ok(vec![
        plain(format!("{scope}:*")),
        plain(format!("{scope}@*")),
        plain(format!("{scope}/**")),
    ])
}

/// A scope's requirements (all must pass) as rule settings and notes.
fn requirements_to_settings(
    requirements: &[serde_json::Value],
    key_dir: Option<&Path>,
    name: &str,
    keys: &mut Vec<(PathBuf, String)>,
    errs: &mut Vec<String>,
) -> (Vec<String>, Vec<String>) {
    let mut notes = Vec::new();
    if requirements.is_empty() {
        errs.push("an empty list of requirements (containers/image refuses the file)".to_owned());
        return (Vec::new(), notes);
    }
    let mut reject = None;
    let mut signed = Vec::new();
    for r in requirements {
        match r.get("type").and_then(|t| t.as_str()) {
            Some("insecureAcceptAnything") => {
                if r.as_object().is_some_and(|o| o.len() != 1) {
                    errs.push("insecureAcceptAnything takes no other field".to_owned());
                }
            }
            Some("reject") => reject = Some("reject"),
            Some("signedBaseLayer") => {
                reject = Some("signedBaseLayer (containers/image refuses every image with it)");
            }
            Some("signedBy") => errs.push("signedBy (GPG simple signing) has no pullguard equivalent: sign with cosign and use sigstoreSigned, or write the rule by hand".to_owned()),
            Some("sigstoreSigned") => signed.push(r),
            other => errs.push(format!("requirement type {other:?} is not one containers/image knows")),
        }
    }
    if let Some(why) = reject {
        return (
            vec![format!("require = \"reject\"  # containers-policy: {why}")],
            notes,
        );
    }
    match signed.as_slice() {
        [] => (
            vec!["require = \"any\"  # containers-policy: insecureAcceptAnything".to_owned()],
            notes,
        ),
        [one] => {
            let settings = sigstore(one, key_dir, name, keys, errs, &mut notes);
            (settings, notes)
        }
        _ => {
            errs.push("several sigstoreSigned requirements must all pass (each by its own signer); a pullguard rule's signers are alternatives".to_owned());
            (Vec::new(), notes)
        }
    }
}

fn sigstore(
    value: &serde_json::Value,
    key_dir: Option<&Path>,
    name: &str,
    keys: &mut Vec<(PathBuf, String)>,
    errs: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Vec<String> {
    let s: Sigstore = match serde_json::from_value(value.clone()) {
        Ok(s) => s,
        Err(e) => {
            errs.push(format!("sigstoreSigned: {e}"));
            return Vec::new();
        }
    };
    let mut settings = vec!["proofs = [\"cosign\"]".to_owned()];
    match s.signed_identity.as_ref().map(|i| i.get("type").and_then(|t| t.as_str())) {
        Some(Some("matchRepository")) if s.signed_identity.as_ref().and_then(|i| i.as_object()).is_some_and(|o| o.len() == 1) => {
            settings.push("cosign_check_reference = true  # containers-policy: matchRepository".to_owned());
        }
        None | Some(Some("matchRepoDigestOrExact")) => errs.push("signedIdentity matchRepoDigestOrExact (the default) wants the signature to name the pulled tag, and refuses cosign's signatures, which name the repository only; pullguard cannot express it: with cosign signatures use {\"type\": \"matchRepository\"} (which containers/image also needs for them) and import again".to_owned()),
        Some(other) => errs.push(format!("signedIdentity {:?} cannot be expressed (pullguard compares the signed docker-reference by repository: matchRepository)", other.unwrap_or("?"))),
    }
    let trust = [
        s.key_path.is_some(),
        s.key_paths.is_some(),
        s.key_data.is_some(),
        s.key_datas.is_some(),
        s.fulcio.is_some(),
        s.pki.is_some(),
    ];
    if trust.iter().filter(|t| **t).count() != 1 {
        errs.push("sigstoreSigned needs exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio and pki".to_owned());
        return settings;
    }
    // Rekor keys: one field at most; whatever it names must be the public-good log's keys,
    // the only log keys pullguard's rule can name here.
    let rekor = rekor_keys(&s);
    let rekor = match rekor {
        Ok(r) => r,
        Err(e) => {
            errs.push(e);
            return settings;
        }
    };
    let public_good = match &rekor {
        None => false,
        Some(k) if *k == public_good_tlog_keys() => true,
        Some(_) => {
            errs.push("rekorPublicKey names a transparency log other than Sigstore's public-good one (or only some of its keys): give pullguard that instance's trusted_root.json and write the rule by hand".to_owned());
            return settings;
        }
    };
    if s.pki.is_some() {
        errs.push("pki (certificates from a CA of your own, checked at the current time, without a log) cannot be expressed".to_owned());
        return settings;
    }
    if let Some(f) = &s.fulcio {
        if !public_good {
            errs.push(
                "fulcio needs rekorPublicKey* (containers/image refuses it otherwise)".to_owned(),
            );
            return settings;
        }
        let ca = match (&f.ca_path, &f.ca_data) {
            (Some(p), None) => std::fs::read(p).map_err(|e| format!("fulcio.caPath {p}: {e}")),
            (None, Some(d)) => base64::engine::general_purpose::STANDARD
                .decode(d)
                .map_err(|e| format!("fulcio.caData: {e}")),
            _ => Err("fulcio needs exactly one of caPath and caData".to_owned()),
        };
        match ca.and_then(|pem| sigstore_core::keys::pem_blocks(&pem, "CERTIFICATE")) {
            Ok(certs)
                if certs
                    .iter()
                    .cloned()
                    .collect::<std::collections::BTreeSet<_>>()
                    == public_good_ca_roots() => {}
            Ok(_) => {
                errs.push("fulcio's CA is not exactly Sigstore's public-good Fulcio roots: give pullguard that instance's trusted_root.json and write the rule by hand".to_owned());
                return settings;
            }
            Err(e) => {
                errs.push(e);
                return settings;
            }
        }
        if f.oidc_issuer.is_empty() || f.subject_email.is_empty() {
            errs.push("fulcio needs oidcIssuer and subjectEmail".to_owned());
            return settings;
        }
        settings.push(format!(
            "cosign_identities = [{{ issuer = {}, subject = {} }}]",
            quote(&f.oidc_issuer),
            quote(&f.subject_email)
        ));
        settings.push("cosign_tlog = true".to_owned());
        settings.push("trusted_root = \"sigstore-public-good\"".to_owned());
        notes.push("pullguard also checks the certificate's SCT, which containers/image does not (every public-good Fulcio certificate carries one)".to_owned());
    } else {
        let mut files = Vec::new();
        let paths = s.key_path.iter().chain(s.key_paths.iter().flatten());
        for p in paths {
            match std::fs::read(p)
                .map_err(|e| e.to_string())
                .and_then(|b| sigstore_core::PublicKey::from_pem(&b).map(|_| ()))
            {
                Ok(()) => files.push(p.clone()),
                // containers/image reads key files when it verifies: a bad one refuses
                // the requirement's images; pullguard would not load the rule at all.
                Err(e) => errs.push(format!(
                    "key {p}: {e} (containers/image would refuse every image of this scope)"
                )),
            }
        }
        let datas = s.key_data.iter().chain(s.key_datas.iter().flatten());
        for (i, d) in datas.enumerate() {
            let pem = base64::engine::general_purpose::STANDARD
                .decode(d)
                .map_err(|e| e.to_string())
                .and_then(|b| String::from_utf8(b).map_err(|e| e.to_string()));
            match pem
                .and_then(|pem| inline_key(&pem, key_dir, format!("{name}-{}.pub", i + 1), keys))
            {
                Ok(path) => files.push(path),
                Err(e) => errs.push(format!("keyData: {e}")),
            }
        }
        let quoted: Vec<String> = files.iter().map(|f| quote(f)).collect();
        settings.push(format!("cosign_keys = [{}]", quoted.join(", ")));
        if public_good {
            settings.push(
                "cosign_tlog = true  # a Rekor SET is required: rekorPublicKey is set".to_owned(),
            );
            settings.push("trusted_root = \"sigstore-public-good\"".to_owned());
        } else {
            settings.push(
                "cosign_tlog = false  # no rekorPublicKey: the log is not checked".to_owned(),
            );
        }
    }
    notes.push("containers/image reads these signatures only where registries.d sets use-sigstore-attachments: true; pullguard reads them always. Both take cosign's classic layout only here (a Sigstore bundle carries no docker-reference to check)".to_owned());
    settings
}

/// The Rekor keys a requirement names, as SPKI DER; `None` when it names none.
fn rekor_keys(s: &Sigstore) -> Result<Option<std::collections::BTreeSet<Vec<u8>>>, String> {
    let given = [
        s.rekor_public_key_path.is_some(),
        s.rekor_public_key_paths.is_some(),
        s.rekor_public_key_data.is_some(),
        s.rekor_public_key_datas.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err("at most one of rekorPublicKeyPath(s) and rekorPublicKeyData(s)".to_owned());
    }
    let mut pems = Vec::new();
    for p in s
        .rekor_public_key_path
        .iter()
        .chain(s.rekor_public_key_paths.iter().flatten())
    {
        pems.push(std::fs::read(p).map_err(|e| format!("rekor key {p}: {e}"))?);
    }
    for d in s
        .rekor_public_key_data
        .iter()
        .chain(s.rekor_public_key_datas.iter().flatten())
    {
        pems.push(
            base64::engine::general_purpose::STANDARD
                .decode(d)
                .map_err(|e| format!("rekorPublicKeyData: {e}"))?,
        );
    }
    if pems.is_empty() {
        return Ok(None);
    }
    pems.iter()
        .map(|p| {
            sigstore_core::PublicKey::from_pem(p)
                .map(|k| k.spki_der().to_vec())
                .map_err(|e| format!("rekor key: {e}"))
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

fn public_good() -> Option<sigstore_core::trust_root::TrustedRoot> {
    sigstore_core::trust_root::TrustedRoot::parse(sigstore_core::trust_root::public_good_bytes())
        .ok()
}

fn public_good_tlog_keys() -> std::collections::BTreeSet<Vec<u8>> {
    public_good()
        .map(|r| r.tlogs.iter().map(|l| l.key.spki_der().to_vec()).collect())
        .unwrap_or_default()
}

fn public_good_ca_roots() -> std::collections::BTreeSet<Vec<u8>> {
    public_good()
        .map(|r| {
            r.cas
                .iter()
                .filter_map(|a| a.chain.last().cloned())
                .collect()
        })
        .unwrap_or_default()
}

/// Refuses a JSON text in which an object has a key twice.
fn no_duplicate_keys(text: &str) -> Result<(), String> {
    struct Checked;
    impl<'de> serde::Deserialize<'de> for Checked {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Checked, D::Error> {
            d.deserialize_any(Visitor)
        }
    }
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Checked;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Checked, A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(k) = m.next_key::<String>()? {
                if !seen.insert(k.clone()) {
                    return Err(serde::de::Error::custom(format!(
                        "the key {k:?} appears twice"
                    )));
                }
                m.next_value::<Checked>()?;
            }
            Ok(Checked)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<Checked, A::Error> {
            while s.next_element::<Checked>()?.is_some() {}
            Ok(Checked)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_unit<E>(self) -> Result<Checked, E> {
            Ok(Checked)
        }
    }
    serde_json::from_str::<Checked>(text)
        .map(drop)
        .map_err(|e| e.to_string())
}
