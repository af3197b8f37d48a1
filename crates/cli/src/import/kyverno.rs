//! Kyverno `verifyImages` rules (ClusterPolicy, kyverno.io/v1 and v2beta1) as pullguard
//! rules. Kyverno's semantics, as its source has them (pkg/engine, ext/wildcard,
//! pkg/image/verifiers/cpol/cosign at 111e07bb):
//!
//! - `imageReferences` are go-wildcard patterns over Kyverno's normal form of the image:
//!   anchored, `*` any run of characters (it crosses `/`, `:` and `@`), `?` exactly one;
//!   the normal form is `registry/path:tag` or `registry/path@digest` (the tag dropped), with
//!   no `library/` added for Docker Hub (`nginx` is `docker.io/nginx:latest`, while pullguard
//!   and containerd say `docker.io/library/nginx:latest`).
//! - Every attestor set must pass; within a set, `count` entries (all when unset); a
//!   `publicKeys` with several PEMs is several entries. Every matching verifyImages entry
//!   of every rule must pass.
//! - `type: Cosign` reads cosign's classic `.sig` tag. The transparency log is required
//!   unless `rekor.ignoreTlog` (the entry in the signature, else an online lookup), with
//!   the public-good Rekor keys from TUF unless `rekor.pubkey`; keyless certificates chain
//!   to the public-good Fulcio roots unless `roots`, with an SCT unless `ctlog.ignoreSCT`.
//! - Keyless identities are checked by Kyverno itself: `subject` is a wildcard over any
//!   SAN, `issuer` a wildcard over the v1 OIDC-issuer extension, `subjectRegExp` and
//!   `issuerRegExp` unanchored Go expressions; subject and subjectRegExp either, issuer and
//!   issuerRegExp both.
//! - `type: Notary` hands notation-go one `ca` trust store per attestor entry (its
//!   `cert` and `certChain`), trusted identity `*`, level strict, at most 10 signatures.
//! - A rule enforces when any of its verifyImages entries says Enforce; otherwise the first
//!   explicit failureAction, else `spec.validationFailureAction`, whose default is Audit.

use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

mod attestors;

use super::{inline_key, quote, render, slug, Converted, Imported, Pattern};
use attestors::{identity, notary_stores, pattern};

/// `(file name, text)` of each input; `key_dir`: where inline keys are written.
pub(super) fn import(
    texts: &[(String, String)],
    key_dir: Option<&Path>,
) -> Result<Imported, Vec<String>> {
    let mut problems = Vec::new();
    let mut converted = Vec::new();
    let mut keys = Vec::new();
    for (place, doc) in super::yaml_documents(texts, &mut problems) {
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
        let api = doc
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let name = doc
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("unnamed")
            .to_owned();
        let what = format!("{kind} {name}");
        let mut problem = |m: String| problems.push(format!("{place}: {what}: {m}"));
        if !matches!(api, "kyverno.io/v1" | "kyverno.io/v2beta1") {
            problem(format!(
                "apiVersion {api:?} is not a Kyverno policy (kyverno.io/v1 or v2beta1): give the ClusterPolicy documents alone"
            ));
            continue;
        }
        match kind {
            "ClusterPolicy" => {}
            "Policy" => {
                problem("a namespaced Policy applies to one namespace; a node-side rule applies to every pull: write it as a ClusterPolicy for the images it means".to_owned());
                continue;
            }
            other => {
                problem(format!("{other} is not a ClusterPolicy"));
                continue;
            }
        }
        let Some(spec) = doc.get("spec") else {
            problem("no spec".to_owned());
            continue;
        };
        // Variables are filled in from the admission request and context at run time;
        // a node has neither.
        if let Some(at) = variable(spec) {
            problem(format!("{at} holds a Kyverno variable ({{{{ … }}}}), which only the admission request can fill in: write the value itself"));
        }
        let default_action = match spec.get("validationFailureAction").and_then(Value::as_str) {
            None => "Audit",
            Some(a) => a,
        };
        for key in ["validationFailureActionOverrides", "applyRules"] {
            if spec
                .get(key)
                .is_some_and(|v| !v.is_null() && v.as_str() != Some("All"))
            {
                problem(format!(
                    "spec.{key} cannot be expressed (a node does not see namespaces)"
                ));
            }
        }
        if spec.get("failurePolicy").and_then(Value::as_str) == Some("Ignore") {
            problem("failurePolicy: Ignore lets a pod through when a registry cannot be asked; pullguard fails closed (on_unreachable = \"deny\")".to_owned());
        }
        let rules = spec
            .get("rules")
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default();
        for (i, rule) in rules.iter().enumerate() {
            let Some(entries) = rule.get("verifyImages").and_then(Value::as_sequence) else {
                continue; // validate/mutate/generate rules are not about signatures
            };
            let rule_name = rule
                .get("name")
                .and_then(Value::as_str)
                .map_or_else(|| format!("rule {}", i + 1), str::to_owned);
            let mut errs = Vec::new();
            check_match(rule, &mut errs);
            // The rule's effective action: any Enforce, else the first explicit one.
            let actions: Vec<&str> = entries
                .iter()
                .filter_map(|e| {
                    e.get("failureAction")
                        .or_else(|| e.get("validationFailureAction"))
                        .and_then(Value::as_str)
                })
                .collect();
            let action = if actions.contains(&"Enforce") {
                "Enforce"
            } else {
                actions.first().copied().unwrap_or(default_action)
            };
            let mode = match action {
                "Enforce" | "enforce" => None,
                "Audit" | "audit" => Some(format!(
                    "mode = \"audit\"  # Kyverno: {action}{}",
                    if actions.is_empty() {
                        " (spec.validationFailureAction, default Audit)"
                    } else {
                        ""
                    }
                )),
                other => {
                    errs.push(format!("failureAction {other:?} is not Enforce or Audit"));
                    None
                }
            };
            for (j, entry) in entries.iter().enumerate() {
                let base = slug(&format!("{name}-{rule_name}"));
                let rule_id = if entries.len() > 1 {
                    format!("{base}-{}", j + 1)
                } else {
                    base
                };
                match verify_images(entry, key_dir, &rule_id, &mut keys) {
                    Ok((patterns, mut settings, notes)) => {
                        if let Some(m) = &mode {
                            settings.insert(0, m.clone());
                        }
                        converted.push(Converted {
                            what: format!("{what}, rule {rule_name}, verifyImages {}", j + 1),
                            name: rule_id,
                            patterns,
                            settings,
                            notes,
                        });
                    }
                    Err(e) => errs.extend(
                        e.into_iter()
                            .map(|m| format!("verifyImages {}: {m}", j + 1)),
                    ),
                }
            }
            for e in errs {
                problem(format!("rule {rule_name}: {e}"));
            }
        }
    }
    render(
        "# Imported from Kyverno verifyImages rules by `pullguard policy import`.\n# An image no rule matches is rejected (Kyverno lets it through: add a rule for the others).\n",
        &converted,
        Some("Kyverno requires every matching verifyImages entry to pass, a pullguard rule stands alone: merge them by hand"),
        keys,
        problems,
    )
}

/// Where the first `{{ … }}` variable sits, as a dotted path, if any.
fn variable(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s.contains("{{") => Some("spec".to_owned()),
        Value::Sequence(items) => items.iter().enumerate().find_map(|(i, item)| {
            variable(item).map(|at| at.replacen("spec", &format!("spec[{i}]"), 1))
        }),
        Value::Mapping(map) => map.iter().find_map(|(k, item)| {
            variable(item)
                .map(|at| at.replacen("spec", &format!("spec.{}", k.as_str().unwrap_or("?")), 1))
        }),
        Value::Tagged(t) => variable(&t.value),
        _ => None,
    }
}

/// A rule that selects pods only, as every node-side check does.
fn check_match(rule: &Value, errs: &mut Vec<String>) {
    for key in ["exclude", "preconditions", "context", "imageExtractors"] {
        if rule.get(key).is_some_and(|v| !v.is_null()) {
            errs.push(format!(
                "{key} cannot be expressed (a node judges every pull the same way)"
            ));
        }
    }
    let pods_only = |resources: &Value| {
        let Some(map) = resources.as_mapping() else {
            return false;
        };
        map.iter().all(|(k, v)| {
            k.as_str() == Some("kinds")
                && v.as_sequence().is_some_and(|kinds| {
                    kinds.iter().all(|k| {
                        matches!(
                            k.as_str(),
                            Some(
                                "Pod"
                                    | "Deployment"
                                    | "DaemonSet"
                                    | "StatefulSet"
                                    | "ReplicaSet"
                                    | "Job"
                                    | "CronJob"
                            )
                        )
                    })
                })
        })
    };
    let Some(m) = rule.get("match") else {
        return;
    };
    // `resources` directly, or in each `any` / `all` item; nothing else (subjects, roles,
    // namespaces, names, selectors) narrows it.
    let only_resources = m.as_mapping().is_some_and(|map| {
        map.iter().all(|(k, v)| match k.as_str() {
            Some("resources") => pods_only(v),
            Some("any" | "all") => v.as_sequence().is_some_and(|items| {
                items.iter().all(|item| {
                    item.as_mapping().is_some_and(|fields| {
                        fields
                            .iter()
                            .all(|(k, v)| k.as_str() == Some("resources") && pods_only(v))
                    })
                })
            }),
            _ => false,
        })
    });
    if !only_resources {
        errs.push("match selects by more than the kinds of pods (namespaces, names, labels, users): a node-side rule applies to every pull".to_owned());
    }
}

type Entry = (Vec<Pattern>, Vec<String>, Vec<String>);

/// One verifyImages entry as patterns, rule settings and notes, or every reason not.
fn verify_images(
    v: &Value,
    key_dir: Option<&Path>,
    rule_id: &str,
    keys: &mut Vec<(PathBuf, String)>,
) -> Result<Entry, Vec<String>> {
    let mut errs = Vec::new();
    let mut notes = Vec::new();
    let known = [
        "type",
        "imageReferences",
        "failureAction",
        "validationFailureAction",
        "attestors",
        "mutateDigest",
        "verifyDigest",
        "required",
        "useCache",
        "repository",
        "imageRegistryCredentials",
    ];
    if let Some(map) = v.as_mapping() {
        for k in map.keys().filter_map(Value::as_str) {
            if !known.contains(&k) {
                errs.push(format!(
                    "{k} cannot be expressed (pullguard verifies image signatures: attestors)"
                ));
            }
        }
    }
    let notary = match v.get("type").and_then(Value::as_str) {
        None | Some("Cosign") => false,
        Some("Notary") => true,
        Some(other) => {
            errs.push(format!("type {other} cannot be expressed exactly (pullguard's cosign rules check identities as cosign does, not as Kyverno's {other} path)"));
            false
        }
    };
    let mut patterns = Vec::new();
    for r in v
        .get("imageReferences")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        match r.as_str().map(pattern) {
            Some(Ok(p)) => patterns.push(p),
            Some(Err(e)) => errs.push(format!(
                "imageReferences {:?}: {e}",
                r.as_str().unwrap_or("")
            )),
            None => errs.push("imageReferences must be strings".to_owned()),
        }
    }
    if patterns.is_empty() && errs.is_empty() {
        errs.push("no imageReferences".to_owned());
    }
    let mut settings = vec![if notary {
        "proofs = [\"notation\"]"
    } else {
        "proofs = [\"cosign\"]"
    }
    .to_owned()];
    match v.get("repository").and_then(Value::as_str) {
        // Kyverno's Notary verifier is given the repository and never reads it.
        Some(repo) if notary => notes.push(format!("repository {repo:?}: Kyverno's Notary path ignores it; signatures are read beside the image")),
        Some(repo) => settings.push(format!("signature_repository = {}", quote(repo))),
        None => {}
    }
    let flag = |k: &str, default: bool| v.get(k).and_then(Value::as_bool).unwrap_or(default);
    if flag("verifyDigest", true) && !flag("mutateDigest", true) {
        notes.push("verifyDigest without mutateDigest: Kyverno also refuses pods that name the image by tag alone; pullguard judges the digest pulled, whatever the pod wrote".to_owned());
    }
    if v.get("imageRegistryCredentials").is_some() {
        notes.push("imageRegistryCredentials: pullguard reads registry credentials from [daemon] registry_auth_file".to_owned());
    }
    let sets = v
        .get("attestors")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    let set = match sets.as_slice() {
        [one] => one,
        [] => {
            errs.push("no attestors".to_owned());
            return Err(errs);
        }
        _ => {
            errs.push("several attestor sets must all pass (each by its own signer); a pullguard rule's signers are alternatives".to_owned());
            return Err(errs);
        }
    };
    let entries = set
        .get("entries")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    // Several PEMs in one publicKeys are several entries, as Kyverno expands them.
    let mut expanded: Vec<(Value, Option<String>)> = Vec::new();
    for e in &entries {
        match e
            .get("keys")
            .and_then(|k| k.get("publicKeys"))
            .and_then(Value::as_str)
        {
            Some(pems) if pems.trim_start().starts_with("-----BEGIN PUBLIC KEY-----") => {
                for block in pems.split_inclusive("-----END PUBLIC KEY-----") {
                    if block.contains("-----BEGIN PUBLIC KEY-----") {
                        expanded.push((e.clone(), Some(block.trim().to_owned())));
                    }
                }
            }
            _ => expanded.push((e.clone(), None)),
        }
    }
    let count = set.get("count").and_then(Value::as_u64).unwrap_or(0);
    if count as usize > expanded.len() {
        errs.push(format!(
            "count {count} of {} entries: Kyverno refuses this policy",
            expanded.len()
        ));
    }
    if expanded.len() > 1 && count != 1 {
        errs.push(format!(
            "{} entries must {} pass (count {}); a pullguard rule accepts any one of its signers (count: 1)",
            expanded.len(),
            if count == 0 { "all" } else { "several" },
            if count == 0 { "unset: all".to_owned() } else { count.to_string() }
        ));
    }
    if notary {
        return notary_stores(&expanded, key_dir, rule_id, keys, errs).map(|(more, why)| {
            settings.extend(more);
            notes.extend(why);
            (patterns, settings, notes)
        });
    }
    let mut tlog = None;
    let mut key_files = Vec::new();
    let mut identities = Vec::new();
    for (n, (e, pem)) in expanded.iter().enumerate() {
        let mut unknown = false;
        for k in ["certificates", "attestor", "annotations"] {
            if e.get(k).is_some() {
                errs.push(format!("attestor entry {}: {k} cannot be expressed", n + 1));
                unknown = true;
            }
        }
        if e.get("repository").is_some() {
            errs.push(format!("attestor entry {}: a signature repository per attestor cannot be expressed (set it on the verifyImages entry)", n + 1));
        }
        if e.get("signatureAlgorithm")
            .and_then(Value::as_str)
            .is_some_and(|a| a != "sha256")
        {
            errs.push(format!(
                "attestor entry {}: signatureAlgorithm other than sha256",
                n + 1
            ));
        }
        let (body, keyless) = match (e.get("keys"), e.get("keyless")) {
            (Some(k), None) => (k, false),
            (None, Some(k)) => (k, true),
            _ => {
                if !unknown {
                    errs.push(format!("attestor entry {}: needs keys or keyless", n + 1));
                }
                continue;
            }
        };
        let rekor = body.get("rekor");
        if rekor.and_then(|r| r.get("pubkey")).is_some() {
            errs.push(format!("attestor entry {}: rekor.pubkey names a log of its own; give pullguard its trusted_root.json and write the rule by hand", n + 1));
        }
        if let Some(u) = rekor.and_then(|r| r.get("url")).and_then(Value::as_str) {
            if u.trim_end_matches('/') != "https://rekor.sigstore.dev" {
                notes.push(format!("rekor.url {u}: Kyverno asks that log online when a signature carries no entry, with the public-good Rekor keys; pullguard checks the entry in the signature against the same keys"));
            }
        }
        let ignore_tlog = rekor
            .and_then(|r| r.get("ignoreTlog"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let ctlog = body.get("ctlog");
        if ctlog
            .and_then(|c| c.get("pubkey").or_else(|| c.get("tsaCertChain")))
            .is_some()
        {
            errs.push(format!(
                "attestor entry {}: ctlog.pubkey / tsaCertChain name authorities of their own",
                n + 1
            ));
        }
        if keyless {
            if ignore_tlog {
                errs.push(format!("attestor entry {}: keyless with rekor.ignoreTlog checks the certificate at the current time; pullguard needs a log entry or a timestamp", n + 1));
            }
            if ctlog
                .and_then(|c| c.get("ignoreSCT"))
                .and_then(Value::as_bool)
                == Some(true)
            {
                errs.push(format!("attestor entry {}: ctlog.ignoreSCT: pullguard always checks the certificate's SCT", n + 1));
            }
            for k in ["roots", "additionalExtensions"] {
                if body.get(k).is_some() {
                    errs.push(format!(
                        "attestor entry {}: keyless.{k} cannot be expressed",
                        n + 1
                    ));
                }
            }
            match identity(body) {
                Ok((ids, note)) => {
                    identities.extend(ids);
                    notes.extend(note);
                }
                Err(m) => errs.push(format!("attestor entry {}: {m}", n + 1)),
            }
        } else {
            for k in ["secret", "kms"] {
                if body.get(k).is_some() {
                    errs.push(format!("attestor entry {}: keys.{k}: pullguard reads public keys from files; put the PEM in publicKeys", n + 1));
                }
            }
            match pem {
                Some(pem) => match inline_key(pem, key_dir, format!("{rule_id}-{}.pub", n + 1), keys) {
                    Ok(path) => key_files.push(path),
                    Err(m) => errs.push(format!("attestor entry {}: publicKeys: {m}", n + 1)),
                },
                None => errs.push(format!("attestor entry {}: publicKeys must be PEM (a k8s:// or KMS key cannot be read here)", n + 1)),
            }
        }
        let needs = !ignore_tlog;
        match tlog {
            Some(t) if t != needs => errs.push("entries that need the transparency log beside entries that skip it: one pullguard rule has one cosign_tlog".to_owned()),
            _ => tlog = Some(needs),
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    let tlog = tlog.unwrap_or(true);
    super::cosign_settings(&mut settings, &key_files, &identities, tlog);
    if tlog {
        notes.push("Kyverno looks a signature without a log entry up online; pullguard needs the entry in the signature (cosign writes it)".to_owned());
    }
    notes.push("Kyverno's type Cosign reads cosign's classic layout only; pullguard also accepts the same signer's signature as a Sigstore bundle".to_owned());
    Ok((patterns, settings, notes))
}
