//! `pullguard policy import`: each source's own example policies (policy-controller,
//! containers-policy.json, Kyverno; tests/fixtures, with provenance) import or are refused
//! with their reasons, and round trips: the imported rules give the verdicts cosign gives
//! (classic layout; a key without the log; keyless against the public-good root, on real
//! signatures) and, for Kyverno's Notary attestors, the verdicts notation-go gives, on real
//! signed, unsigned, wrong-key, tampered and wrong-identity images from a real registry.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;
#[path = "../../daemon/tests/harness/mod.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::pullguard;
use harness::{CosignWorld, NotationWorld, World};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/policy-controller")
        .join(name)
}

fn kyverno_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kyverno")
        .join(name)
}

fn containers_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/containers-policy")
        .join(name)
}

/// Sigstore's public-good Fulcio roots and Rekor keys as PEM files, as an operator
/// writes them for containers-policy.json's fulcio and rekorPublicKeyPaths.
fn public_good_pems(dir: &Path) -> (PathBuf, Vec<PathBuf>) {
    use base64::Engine as _;
    let root: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../sigstore-core/data/public-good/trusted_root.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let pem = |label: &str, b64: &str| {
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    };
    let mut cas = String::new();
    for ca in root["certificateAuthorities"].as_array().unwrap() {
        let certs = ca["certChain"]["certificates"].as_array().unwrap();
        cas.push_str(&pem(
            "CERTIFICATE",
            certs.last().unwrap()["rawBytes"].as_str().unwrap(),
        ));
    }
    let ca_file = dir.join("fulcio-roots.pem");
    std::fs::write(&ca_file, cas).unwrap();
    let mut rekor = Vec::new();
    for (i, log) in root["tlogs"].as_array().unwrap().iter().enumerate() {
        let f = dir.join(format!("rekor-{i}.pub"));
        std::fs::write(
            &f,
            pem("PUBLIC KEY", log["publicKey"]["rawBytes"].as_str().unwrap()),
        )
        .unwrap();
        rekor.push(f);
    }
    (ca_file, rekor)
}

/// Verdicts `(image, pullguard, cosign, reason)` of a key rule on CosignWorld's images:
/// the same on every image but the Sigstore bundle, which pullguard accepts and cosign's
/// classic-only verification does not; cosign accepts the classic one alone.
fn cosign_agrees_but_for_the_bundle(got: &[(String, bool, bool, String)]) {
    for (image, ours, theirs, reason) in got {
        if image.ends_with(":bundle") {
            assert!(
                *ours && !*theirs,
                "{image}: pullguard {ours}, cosign {theirs}"
            );
        } else {
            assert_eq!(
                ours, theirs,
                "{image}: pullguard {ours} ({reason}), cosign {theirs}"
            );
        }
    }
    assert_eq!(
        got.iter().filter(|g| g.2).count(),
        1,
        "cosign allows the classic one only: {got:?}"
    );
}

fn import(files: &[&Path], key_dir: &Path) -> (i32, String) {
    import_from("policy-controller", files, key_dir)
}

fn import_from(source: &str, files: &[&Path], key_dir: &Path) -> (i32, String) {
    let mut args = vec!["policy", "import", "--from", source];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    args.extend(["--key-dir", key_dir.to_str().unwrap()]);
    let (code, _, text) = pullguard(&args);
    (code, text)
}

#[test]
fn policy_controllers_own_examples_import_or_are_refused_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");

    let (code, text) = import(&[&fixture("cip-key-no-rekor.yaml")], &keys);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("match = \"**demo**\"\nany_registry = true"),
        "{text}"
    );
    assert!(
        text.contains("cosign_tlog = false"),
        "a key without ctlog skips the log: {text}"
    );
    let written = std::fs::read_to_string(keys.join("image-policy-key-1.pub")).unwrap();
    assert!(
        written.starts_with(
            "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEIcbqK2RAVZOfPzo"
        ),
        "{written}"
    );
    assert!(
        text.contains(&format!(
            "cosign_keys = [\"{}\"]",
            keys.join("image-policy-key-1.pub").display()
        )),
        "{text}"
    );

    let (code, text) = import(&[&fixture("cip-keyless.yaml")], &keys);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(r#"{ issuer_regex = "(?s:.*)(?:.*kubernetes.default.*)(?s:.*)", subject_regex = "(?s:.*)(?:.*kubernetes.io/namespaces/default/serviceaccounts/default)(?s:.*)" }"#),
        "{text}"
    );
    assert!(
        text.contains("cosign_tlog = true\ntrusted_root = \"sigstore-public-good\""),
        "{text}"
    );
    assert!(
        text.contains("unanchored"),
        "where the source is laxer than it reads, it says so: {text}"
    );
    assert!(
        text.contains("keyless.url http://fulcio.fulcio-system.svc"),
        "{text}"
    );

    let (code, text) = import(&[&fixture("cip-public-keyless.yaml")], &keys);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("match = \"ghcr.io/sigstore/cosign/cosign:v1.12.1\""),
        "{text}"
    );

    // Six authorities, four of them not expressible, and globs only unqualified names
    // meet: every reason, nothing printed.
    let (code, text) = import(&[&fixture("v1beta1-valid-policy-glob.yaml")], &keys);
    assert_eq!(code, 1, "{text}");
    assert!(!text.contains("[[rule]]"), "{text}");
    for reason in [
        "glob \"images.*\": it matches only through policy-controller's deprecated fallback",
        "glob \"image*\": it matches only",
        "authority 1: keyless with a Fulcio CA of its own",
        "authority 4: a key authority without ctlog",
        "authority 5: key.kms",
        "authority 6: key.secretRef",
    ] {
        assert!(text.contains(reason), "{reason}: {text}");
    }
}

#[test]
fn globs_modes_static_authorities_and_overlapping_policies() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let cip = |name: &str, globs: &[&str], rest: &str| {
        let globs: String = globs
            .iter()
            .map(|g| format!("  - glob: \"{g}\"\n"))
            .collect();
        format!("apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: {name}\nspec:\n  images:\n{globs}{rest}")
    };
    let keyless = "  authorities:\n  - keyless:\n      identities:\n      - issuer: https://token.actions.githubusercontent.com\n        subject: https://github.com/org/app/.github/workflows/release.yml@refs/heads/main\n";
    let f = write(
        "many.yaml",
        &format!(
            "{}---\n{}",
            cip(
                "hub",
                &["*", "index.docker.io/org/*"],
                &format!("  mode: warn\n{keyless}")
            ),
            cip(
                "internal",
                &["registry.internal:5000/team/app"],
                "  authorities:\n  - static:\n      action: pass\n"
            ),
        ),
    );
    let (code, text) = import(&[&f], &keys);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("match = \"docker.io/library/*\""),
        "`*` is Docker Hub's library: {text}"
    );
    assert!(text.contains("match = \"docker.io/org/*\""), "{text}");
    assert!(text.contains("mode = \"audit\""), "{text}");
    assert!(
        text.contains("match = \"registry.internal:5000/team/app:latest\""),
        "an untagged glob: {text}"
    );
    assert!(text.contains("require = \"any\""), "{text}");

    // Two policies over the same images: policy-controller requires both.
    let f = write(
        "overlap.yaml",
        &format!(
            "{}---\n{}",
            cip("a", &["ghcr.io/org/**"], keyless),
            cip("b", &["ghcr.io/**"], keyless),
        ),
    );
    let (code, text) = import(&[&f], &keys);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("ClusterImagePolicy a and ClusterImagePolicy b: their images overlap"),
        "{text}"
    );

    for (glob, why) in [
        ("docker.io/library/alpine:*", "deprecated fallback"),
        ("myuser/app:*", "deprecated fallback"),
        ("ghcr.io/org/app?", "policy-controller refuses it"),
    ] {
        let f = write("one.yaml", &cip("one", &[glob], keyless));
        let (code, text) = import(&[&f], &keys);
        assert_eq!(code, 1, "{glob}: {text}");
        assert!(text.contains(why), "{glob}: {text}");
    }
    let f = write(
        "attest.yaml",
        &cip("att", &["ghcr.io/org/**"], "  authorities:\n  - keyless:\n      identities:\n      - issuerRegExp: .*\n        subjectRegExp: .*\n    attestations:\n    - name: prov\n      predicateType: slsaprovenance\n"),
    );
    let (code, text) = import(&[&f], &keys);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("attestations"), "{text}");
}

/// Each image's verdict under the imported rules beside cosign's, run as policy-controller
/// runs it for the authority (classic layout).
#[test]
fn imported_rules_give_the_verdicts_cosign_gives() {
    let cw = CosignWorld::start();
    let world = World::new();
    let keys = world.dir.path().join("imported-keys");
    let registry = cw.get("REGISTRY");
    let cosign = cw.get("COSIGN");
    let pem = std::fs::read_to_string(cw.get("KEY_A")).unwrap();
    let indented: String = pem.lines().map(|l| format!("        {l}\n")).collect();
    let trusted_root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sigstore-core/data/public-good/trusted_root.json");

    let verdicts = |cip: &str, images: &[(String, String)], cosign_args: &[&str]| {
        let f = world.dir.path().join("cip.yaml");
        std::fs::write(&f, cip).unwrap();
        let source = if cip.starts_with('{') {
            "containers-policy"
        } else if cip.contains("kyverno.io/") {
            "kyverno"
        } else {
            "policy-controller"
        };
        let (code, rules) = import_from(source, &[&f], &keys);
        assert_eq!(code, 0, "{rules}");
        let policy = world.dir.path().join("imported.toml");
        std::fs::write(
            &policy,
            format!(
                "{}{rules}",
                world.daemon_section(&format!(
                    "registry_config_path = \"{}\"\nregistry_timeout = \"5s\"\n",
                    cw.certs_d().display()
                ))
            ),
        )
        .unwrap();
        let mut out = Vec::new();
        for (image, digest) in images {
            let (code, json, text) = pullguard(&[
                "verify",
                image,
                "--digest",
                digest,
                "--policy",
                policy.to_str().unwrap(),
                "--json",
            ]);
            assert!(code == 0 || code == 1, "{image}: {text}");
            let repo = image.rsplit_once(':').map_or(image.as_str(), |(r, _)| r);
            // No arguments: the caller asks cosign itself.
            let by_cosign = !cosign_args.is_empty()
                && Command::new(cosign)
                    .args([
                        "verify",
                        "--allow-http-registry",
                        "--new-bundle-format=false",
                    ])
                    .args(cosign_args)
                    .arg(format!("{repo}@{digest}"))
                    .output()
                    .unwrap()
                    .status
                    .success();
            out.push((
                image.clone(),
                json["allowed"] == true,
                by_cosign,
                json["reason"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        out
    };

    // A key authority without ctlog: cosign's classic verification, the log skipped.
    let cip = format!(
        "apiVersion: policy.sigstore.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata:\n  name: app\nspec:\n  images:\n  - glob: \"{registry}/cosign/**\"\n  authorities:\n  - key:\n      data: |\n{indented}"
    );
    let names = [
        "classic", "bundle", "unsigned", "wrongkey", "tampered", "retagged",
    ];
    let images: Vec<(String, String)> = names.iter().map(|n| cw.image(n)).collect();
    let key_a = cw.get("KEY_A");
    let got = verdicts(
        &cip,
        &images,
        &["--key", key_a, "--insecure-ignore-tlog=true"],
    );
    // The one listed difference: policy-controller's key authority reads the classic
    // layout only; pullguard also takes the same key's Sigstore bundle.
    cosign_agrees_but_for_the_bundle(&got);

    // Keyless, against the public-good root, on real signatures (their signing time):
    // the identity exactly, unanchored as policy-controller reads it, and another one.
    let real = cw.get("PUBLIC_GOOD_GITHUB_ACTIONS_GO_BAZEL");
    let (repo, digest) = real.split_once('@').unwrap();
    let image = (format!("{repo}:v0"), digest.to_owned());
    let subject = "https://github.com/salrashid123/go-bazel-github-workflow/.github/workflows/release.yaml@refs/tags/v0.0.30";
    let issuer = "https://token.actions.githubusercontent.com";
    let keyless = |id: &str| {
        format!(
            "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: real\nspec:\n  images:\n  - glob: \"{registry}/public-good/**\"\n  authorities:\n  - keyless:\n      url: https://fulcio.sigstore.dev\n      identities:\n      - {id}\n"
        )
    };
    let root = trusted_root.to_str().unwrap();
    for (id, cosign_id, want) in [
        (
            format!("issuer: {issuer}\n        subject: {subject}"),
            vec!["--certificate-identity", subject, "--certificate-oidc-issuer", issuer],
            true,
        ),
        // Unanchored on both sides: a part of the SAN is enough (laxer than it reads).
        (
            "issuerRegExp: token.actions\n        subjectRegExp: salrashid123/go-bazel".to_owned(),
            vec!["--certificate-identity-regexp", "salrashid123/go-bazel", "--certificate-oidc-issuer-regexp", "token.actions"],
            true,
        ),
        (
            format!("issuer: {issuer}\n        subject: https://github.com/salrashid123/other/.github/workflows/release.yaml@refs/tags/v0.0.30"),
            vec!["--certificate-identity", "https://github.com/salrashid123/other/.github/workflows/release.yaml@refs/tags/v0.0.30", "--certificate-oidc-issuer", issuer],
            false,
        ),
    ] {
        let mut args = vec!["--trusted-root", root];
        args.extend(cosign_id.iter().copied());
        let got = verdicts(&keyless(&id), std::slice::from_ref(&image), &args);
        let (_, ours, theirs, reason) = &got[0];
        assert_eq!((*ours, *theirs), (want, want), "{id}: pullguard {ours} ({reason}), cosign {theirs}");
    }

    // Kyverno: a key with the log ignored (cosign's classic layout), then keyless with
    // Kyverno's own identity forms: a subject wildcard (go-wildcard, anchored, `*` crossing
    // `/`), an unanchored subjectRegExp, and a wildcard that does not match.
    let kyverno = |entry: &str, pattern: &str| {
        format!(
            "apiVersion: kyverno.io/v1\nkind: ClusterPolicy\nmetadata:\n  name: kv\nspec:\n  rules:\n  - name: sig\n    match:\n      any:\n      - resources:\n          kinds: [Pod]\n    verifyImages:\n    - imageReferences: [\"{registry}/{pattern}\"]\n      failureAction: Enforce\n      attestors:\n      - entries:\n        - {entry}\n"
        )
    };
    let pem_block: String = pem
        .lines()
        .map(|l| format!("                {l}\n"))
        .collect();
    let got = verdicts(
        &kyverno(
            &format!("keys:\n              publicKeys: |-\n{pem_block}              rekor:\n                ignoreTlog: true"),
            "cosign/*",
        ),
        &images,
        &["--key", key_a, "--insecure-ignore-tlog=true"],
    );
    // Listed difference: Kyverno's type Cosign reads the classic layout only.
    cosign_agrees_but_for_the_bundle(&got);
    let tags = "https://github.com/salrashid123/go-bazel-github-workflow/.github/workflows/release.yaml@refs/tags/";
    for (id, cosign_id, want) in [
        (
            format!("subject: \"{tags}v*\"\n              issuer: {issuer}"),
            vec![
                "--certificate-identity-regexp".to_owned(),
                format!("^{}v.*$", tags.replace('.', "\\.")),
                "--certificate-oidc-issuer".to_owned(),
                issuer.to_owned(),
            ],
            true,
        ),
        (
            "subjectRegExp: go-bazel-github\n              issuer: \"https://token.actions.*\""
                .to_owned(),
            vec![
                "--certificate-identity-regexp".to_owned(),
                "go-bazel-github".to_owned(),
                "--certificate-oidc-issuer-regexp".to_owned(),
                "^https://token\\.actions.*$".to_owned(),
            ],
            true,
        ),
        (
            format!(
                "subject: \"{}*\"\n              issuer: {issuer}",
                tags.replace("tags", "heads")
            ),
            vec![
                "--certificate-identity-regexp".to_owned(),
                format!("^{}.*$", tags.replace("tags", "heads").replace('.', "\\.")),
                "--certificate-oidc-issuer".to_owned(),
                issuer.to_owned(),
            ],
            false,
        ),
    ] {
        let mut args = vec!["--trusted-root", root];
        args.extend(cosign_id.iter().map(String::as_str));
        let got = verdicts(
            &kyverno(&format!("keyless:\n              {id}"), "public-good/*"),
            std::slice::from_ref(&image),
            &args,
        );
        let (_, ours, theirs, reason) = &got[0];
        assert_eq!(
            (*ours, *theirs),
            (want, want),
            "{id}: pullguard {ours} ({reason}), cosign {theirs}"
        );
    }

    // containers-policy.json: a key (no Rekor key: the log is not checked), the scope of
    // the repository's namespace, everything else rejected by default.
    let policy = format!(
        r#"{{"default": [{{"type": "reject"}}], "transports": {{"docker": {{"{registry}/cosign": [{{"type": "sigstoreSigned", "keyPath": "{key_a}", "signedIdentity": {{"type": "matchRepository"}}}}]}}}}}}"#
    );
    let got = verdicts(
        &policy,
        &images,
        &["--key", key_a, "--insecure-ignore-tlog=true"],
    );
    // matchRepository checks the signed docker-reference, which only the classic layout
    // carries: the bundle is refused on both sides here.
    for (image, ours, theirs, reason) in &got {
        assert_eq!(
            ours, theirs,
            "{image}: pullguard {ours} ({reason}), cosign {theirs}"
        );
    }
    assert_eq!(
        got.iter().filter(|g| g.1).count(),
        1,
        "the classic one only: {got:?}"
    );
    // Keyless, Fulcio and Rekor as the public-good instance's own roots and keys, an
    // e-mail identity: real signatures the containers/image project made. Their signed
    // docker-reference names 192.168.64.2:5000/cosign-signed/fulcio-rekor-1, so that
    // repository is served here as a mirror (hosts.toml), as matchRepository needs.
    let (cas, rekor) = public_good_pems(world.dir.path());
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sigstore-core/tests/fixtures/public-good-classic/containers-image-fulcio-rekor");
    let pushed = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/cosign/push-classic.py"))
        .arg(format!("http://{registry}/v2/cosign-signed/fulcio-rekor-1"))
        .arg(&fixture)
        .output()
        .unwrap();
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let digest = String::from_utf8_lossy(&pushed.stdout).trim().to_owned();
    let claimed = "192.168.64.2:5000";
    let hosts = cw.certs_d().join(claimed);
    std::fs::create_dir_all(&hosts).unwrap();
    std::fs::write(
        hosts.join("hosts.toml"),
        format!("server = \"https://{claimed}\"\n[host.\"http://{registry}\"]\ncapabilities = [\"pull\", \"resolve\"]\n"),
    )
    .unwrap();
    let rekor_paths: Vec<String> = rekor
        .iter()
        .map(|p| format!("\"{}\"", p.display()))
        .collect();
    let issuer = "https://github.com/login/oauth";
    let keyless_policy = |scope: &str, email: &str| {
        format!(
            r#"{{"default": [{{"type": "reject"}}], "transports": {{"docker": {{"{scope}": [{{"type": "sigstoreSigned", "fulcio": {{"caPath": "{}", "oidcIssuer": "{issuer}", "subjectEmail": "{email}"}}, "rekorPublicKeyPaths": [{}], "signedIdentity": {{"type": "matchRepository"}}}}]}}}}}}"#,
            cas.display(),
            rekor_paths.join(", ")
        )
    };
    let by_cosign = |email: &str| {
        Command::new(cosign)
            .args([
                "verify",
                "--allow-http-registry",
                "--new-bundle-format=false",
                "--trusted-root",
                root,
            ])
            .args([
                "--certificate-identity",
                email,
                "--certificate-oidc-issuer",
                issuer,
            ])
            .arg(format!("{registry}/cosign-signed/fulcio-rekor-1@{digest}"))
            .output()
            .unwrap()
            .status
            .success()
    };
    for (email, want) in [("mitr@redhat.com", true), ("someone@redhat.com", false)] {
        let got = verdicts(
            &keyless_policy(&format!("{claimed}/cosign-signed"), email),
            &[(
                format!("{claimed}/cosign-signed/fulcio-rekor-1:v0"),
                digest.clone(),
            )],
            &[],
        );
        let (_, ours, _, reason) = &got[0];
        // cosign judges the signature (it does not look at the docker-reference, which
        // names this repository here).
        let theirs = by_cosign(email);
        assert_eq!(
            (*ours, theirs),
            (want, want),
            "{email}: pullguard {ours} ({reason}), cosign {theirs}"
        );
    }
    // The same signature pulled from another repository: cosign accepts it (it does not
    // look at the docker-reference), matchRepository refuses it, and so does pullguard.
    let got = verdicts(
        &keyless_policy(&format!("{registry}/cosign-signed"), "mitr@redhat.com"),
        &[(
            format!("{registry}/cosign-signed/fulcio-rekor-1:v0"),
            digest.clone(),
        )],
        &[],
    );
    assert!(by_cosign("mitr@redhat.com"));
    assert_eq!(
        (got[0].1, got[0].3.as_str()),
        (false, "identity_mismatch"),
        "{got:?}"
    );
}

#[test]
fn containers_policy_examples_import_or_are_refused_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    for f in ["default-policy.json", "docs-accept-anything.json"] {
        let (code, text) = import_from("containers-policy", &[&containers_fixture(f)], &keys);
        assert_eq!(code, 0, "{f}: {text}");
        assert!(
            text.contains("match = \"**\"\nrequire = \"any\""),
            "{f}: {text}"
        );
    }
    let (code, text) = import_from(
        "containers-policy",
        &[&containers_fixture("docs-locked-down.json")],
        &keys,
    );
    assert_eq!(code, 1, "comments are not JSON: {text}");
    let (code, text) = import_from(
        "containers-policy",
        &[&containers_fixture("fixtures-policy.json")],
        &keys,
    );
    assert_eq!(code, 1, "{text}");
    for reason in [
        "scope \"registry.access.redhat.com\": signedBy (GPG simple signing) has no pullguard equivalent",
        "scope \"example.com/sigstore/key-data-example\": signedIdentity matchRepoDigestOrExact (the default)",
        "scope \"bogus/key-data-example\": containers/image never matches it",
    ] {
        assert!(text.contains(reason), "{reason}: {text}");
    }

    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let key = containers_fixture("cosign.pub");
    let signed = |extra: &str| {
        format!(
            r#"[{{"type": "sigstoreSigned", "keyPath": "{}", "signedIdentity": {{"type": "matchRepository"}}{extra}}}]"#,
            key.display()
        )
    };
    let f = write(
        "scopes.json",
        &format!(
            r#"{{"default": [{{"type": "reject"}}], "transports": {{"docker": {{
                "registry.example.com": {},
                "registry.example.com/team/app:v1": [{{"type": "insecureAcceptAnything"}}],
                "*.example.com": [{{"type": "reject"}}, {{"type": "insecureAcceptAnything"}}],
                "docker.io/library": [{{"type": "signedBaseLayer", "baseLayerIdentity": {{"type": "matchRepository"}}}}]
            }}, "oci": {{"": [{{"type": "insecureAcceptAnything"}}]}}}}}}"#,
            signed("")
        ),
    );
    let (code, text) = import_from("containers-policy", &[&f], &keys);
    assert_eq!(code, 0, "{text}");
    for want in [
        "match = \"registry.example.com/**\"",
        "cosign_tlog = false",
        "match = \"registry.example.com/team/app:v1\"\nrequire = \"any\"",
        "match = \"*.example.com:*/**\"\nany_registry = true",
        "match = \"docker.io/library/**\"\nrequire = \"reject\"",
        "match = \"**\"\nrequire = \"reject\"",
        "transports oci",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    // What the imported rules decide, scope by scope (the most specific one alone).
    let policy = write("imported.toml", &text);
    for (image, rule) in [
        ("registry.example.com/team/app:v1", "registry-example-com-team-app-v1"),
        ("registry.example.com/team/app:v2", "registry-example-com"),
        ("registry.example.com/app@sha256:0000000000000000000000000000000000000000000000000000000000000000", "registry-example-com"),
        ("a.example.com/x:1", "example-com-1"),
        ("a.example.com:5000/x:1", "example-com-2"),
        ("example.com/x:1", "containers-default"),
        ("busybox", "docker-io-library-3"),
    ] {
        let (code, json, out) = pullguard(&["policy", "explain", image, "--policy", policy.to_str().unwrap(), "--json"]);
        assert_eq!(code, 0, "{image}: {out}");
        assert_eq!(json["rule"], rule, "{image}: {out}");
    }

    for (body, why) in [
        (
            signed("").replace(r#", "signedIdentity": {"type": "matchRepository"}"#, ""),
            "matchRepoDigestOrExact (the default)",
        ),
        (
            format!(
                r#"[{{"type": "sigstoreSigned", "fulcio": {{"caPath": "{}", "oidcIssuer": "https://github.com/login/oauth", "subjectEmail": "a@b.c"}}, "rekorPublicKeyPath": "{}", "signedIdentity": {{"type": "matchRepository"}}}}]"#,
                containers_fixture("fulcio_v1.crt.pem").display(),
                containers_fixture("rekor.pub").display()
            ),
            "a transparency log other than Sigstore's public-good one",
        ),
        (
            signed("").replace(
                "]",
                r#", {"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k"}]"#,
            ),
            "signedBy (GPG simple signing)",
        ),
        (
            format!(
                r#"[{},{}]"#,
                &signed("")[1..signed("").len() - 1],
                &signed("")[1..signed("").len() - 1]
            ),
            "several sigstoreSigned requirements",
        ),
    ] {
        let f = write(
            "one.json",
            &format!(
                r#"{{"default": [{{"type": "reject"}}], "transports": {{"docker": {{"registry.example.com": {body}}}}}}}"#
            ),
        );
        let (code, text) = import_from("containers-policy", &[&f], &keys);
        assert_eq!(code, 1, "{why}: {text}");
        assert!(text.contains(why), "{why}: {text}");
    }
    let f = write(
        "dup.json",
        r#"{"default": [{"type": "reject"}], "default": [{"type": "insecureAcceptAnything"}]}"#,
    );
    let (code, text) = import_from("containers-policy", &[&f], &keys);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("appears twice"), "{text}");
}

#[test]
fn kyverno_examples_import_or_are_refused_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let kyverno = |files: &[&Path]| import_from("kyverno", files, &keys);

    let (code, text) = kyverno(&[&kyverno_fixture("keyed-basic.yaml")]);
    assert_eq!(code, 0, "{text}");
    for want in [
        "match = \"ghcr.io/kyverno/test-verify-image:**\"",
        "proofs = [\"cosign\"]",
        "cosign_tlog = false",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    assert!(
        !text.contains("mode = \"audit\""),
        "failureAction: Enforce: {text}"
    );
    let written =
        std::fs::read_to_string(keys.join("keyed-basic-policy-keyed-basic-rule-1.pub")).unwrap();
    assert!(
        written.contains("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE8nXRh950IZbRj8Ra"),
        "{written}"
    );

    // No rekor block: Kyverno requires the log (public-good Rekor keys).
    let (code, text) = kyverno(&[&kyverno_fixture("keyed-tlog-default.yaml")]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("match = \"ghcr.io/stefanprodan/**\""),
        "{text}"
    );
    assert!(
        text.contains("cosign_tlog = true\ntrusted_root = \"sigstore-public-good\""),
        "{text}"
    );

    let (code, text) = kyverno(&[&kyverno_fixture("multiple-attestors.yaml")]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("name = \"validate-signatures-check-1\""),
        "{text}"
    );
    assert!(
        text.contains("match = \"my.local.repo/**\""),
        "Kyverno's * crosses /: {text}"
    );

    for (file, reasons) in [
        (
            "keyless-attestation-regexp.yaml",
            vec!["attestations cannot be expressed"],
        ),
        (
            "keyless-mutatedigest-verifydigest-required.yaml",
            vec!["ctlog.ignoreSCT: pullguard always checks the certificate's SCT"],
        ),
        (
            "keyless-exact-subject-issuer.yaml",
            vec![
                "keyless.rekor.url holds a Kyverno variable",
                "context cannot be expressed",
            ],
        ),
        (
            "notary-certificates.yaml",
            vec![
                "Namespace notary-verify-images: apiVersion \"v1\" is not a Kyverno policy",
                "certificates.cert holds a Kyverno variable",
                "context cannot be expressed",
            ],
        ),
    ] {
        let (code, text) = kyverno(&[&kyverno_fixture(file)]);
        assert_eq!(code, 1, "{file}: {text}");
        for reason in reasons {
            assert!(text.contains(reason), "{file}: {reason}: {text}");
        }
        assert!(
            !text.contains("[[rule]]"),
            "{file}: nothing printed: {text}"
        );
    }

    // The Notary fixture with its certificate written in (Kyverno fills it from a
    // ConfigMap): a Notation rule over a trust store of it, any identity.
    let notary = std::fs::read_to_string(kyverno_fixture("notary-certificates.yaml")).unwrap();
    let ca_pem: String = notary
        .split("certificate: |-\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| l.starts_with("    "))
        .map(|l| format!("                {}\n", l.trim()))
        .collect();
    let doc = notary
        .split("---\n")
        .find(|d| d.contains("kind: ClusterPolicy"))
        .unwrap();
    let (head, rest) = doc.split_once("      context:\n").unwrap();
    let cut = format!("{head}{}", &rest[rest.find("      match:").unwrap()..]).replace(
        "cert: \"{{ keys.data.certificate }}\"",
        &format!("cert: |-\n{ca_pem}"),
    );
    let f = dir.path().join("notary.yaml");
    std::fs::write(&f, &cut).unwrap();
    let (code, text) = kyverno(&[&f]);
    assert_eq!(code, 0, "{cut}\n{text}");
    assert!(text.contains("notation_identities = [\"*\"]"), "{text}");
    let store = keys.join(
        "notation/truststore/x509/ca/check-image-notary-verify-signature-notary-1/kyverno.pem",
    );
    assert!(
        std::fs::read_to_string(&store)
            .unwrap()
            .contains("BEGIN CERTIFICATE"),
        "{text}"
    );

    // Written here: the defaults and the refusals, one by one.
    let key = std::fs::read_to_string(kyverno_fixture("keyed-basic.yaml")).unwrap();
    let pem: String = key
        .lines()
        .skip_while(|l| !l.contains("BEGIN PUBLIC KEY"))
        .take(4)
        .map(|l| format!("                {}\n", l.trim()))
        .collect();
    let policy = |kind: &str, action: &str, refs: &str, attestors: &str| {
        format!(
            "apiVersion: kyverno.io/v1\nkind: {kind}\nmetadata:\n  name: p\nspec:\n{action}  rules:\n  - name: r\n    match:\n      any:\n      - resources:\n          kinds: [Pod]\n    verifyImages:\n    - imageReferences: [{refs}]\n      attestors:\n{attestors}"
        )
    };
    let keyed = |count: &str, pems: &str| {
        format!("      - {count}entries:\n        - keys:\n            publicKeys: |-\n{pems}            rekor:\n              ignoreTlog: true\n")
    };
    let keyless = |id: &str| format!("      - entries:\n        - keyless:\n            {id}\n");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let other = std::fs::read_to_string(kyverno_fixture("multiple-attestors.yaml")).unwrap();
    let other_pem: String = other
        .lines()
        .skip_while(|l| !l.contains("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEOUD2"))
        .take(2)
        .map(|l| format!("                {}\n", l.trim()))
        .collect();
    let two_keys = &format!(
        "{pem}                -----BEGIN PUBLIC KEY-----\n{other_pem}                -----END PUBLIC KEY-----\n"
    );

    // Without any failureAction, Kyverno audits (spec.validationFailureAction's default).
    let f = write(
        "audit.yaml",
        &policy(
            "ClusterPolicy",
            "",
            "\"registry.example.com/app:*\"",
            &keyed("", &pem),
        ),
    );
    let (code, text) = kyverno(&[&f]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(
            "mode = \"audit\"  # Kyverno: Audit (spec.validationFailureAction, default Audit)"
        ),
        "{text}"
    );
    let f = write(
        "enforce.yaml",
        &policy(
            "ClusterPolicy",
            "  validationFailureAction: Enforce\n",
            "\"registry.example.com/app:*\"",
            &keyed("", &pem),
        ),
    );
    let (code, text) = kyverno(&[&f]);
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("mode ="), "{text}");

    // Two PEMs in one publicKeys: two entries; count 1 is any of them, unset is all.
    let f = write(
        "any-key.yaml",
        &policy(
            "ClusterPolicy",
            "",
            "\"registry.example.com/*\"",
            &keyed("count: 1\n        ", two_keys),
        ),
    );
    let (code, text) = kyverno(&[&f]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("cosign_keys = [")
            && text.contains("p-r-1.pub\", ")
            && text.contains("p-r-2.pub\"]"),
        "{text}"
    );
    let second = std::fs::read_to_string(keys.join("p-r-2.pub")).unwrap();
    assert!(second.contains("EOUD2"), "{second}");

    // Keyless identities: a subject wildcard becomes an anchored expression; an
    // unanchored subjectRegExp stays unanchored, with a note saying so.
    let f = write("keyless.yaml", &policy("ClusterPolicy", "", "\"ghcr.io/org/*\"", &keyless("subject: \"https://github.com/org/*/.github/workflows/release.yml@refs/tags/v*\"\n            issuer: https://token.actions.githubusercontent.com")));
    let (code, text) = kyverno(&[&f]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(r#"cosign_identities = [
  { issuer = "https://token.actions.githubusercontent.com", subject_regex = "https://github\\.com/org/(?s:.*)/\\.github/workflows/release\\.yml@refs/tags/v(?s:.*)" },
]"#),
        "{text}"
    );
    assert!(text.contains("cosign_tlog = true"), "{text}");
    let f = write(
        "regexp.yaml",
        &policy(
            "ClusterPolicy",
            "",
            "\"ghcr.io/org/*\"",
            &keyless("subjectRegExp: org/app"),
        ),
    );
    let (code, text) = kyverno(&[&f]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("subject_regex = \"(?s:.*)(?:org/app)(?s:.*)\""),
        "{text}"
    );
    assert!(text.contains("unanchored"), "{text}");

    // No subject: every identity of the issuer; said in the printed comment.
    let f = write(
        "issuer-only.yaml",
        &policy(
            "ClusterPolicy",
            "",
            "\"ghcr.io/org/*\"",
            &keyless("issuer: https://token.actions.githubusercontent.com"),
        ),
    );
    let (code, text) = kyverno(&[&f]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("subject_regex = \"(?s:.*)\""), "{text}");
    assert!(
        text.contains("no subject: every identity of that issuer passes"),
        "{text}"
    );

    // The imported pattern decides what Kyverno's would (Kyverno's * crosses / and :).
    let f = write(
        "scopes.yaml",
        &policy(
            "ClusterPolicy",
            "",
            "\"registry.example.com/team/*\"",
            &keyed("", &pem),
        ),
    );
    let (code, text) = kyverno(&[&f]);
    assert_eq!(code, 0, "{text}");
    let imported = write("imported.toml", &text);
    for (image, applies) in [
        ("registry.example.com/team/app:v1", true),
        ("registry.example.com/team/sub/app@sha256:0000000000000000000000000000000000000000000000000000000000000000", true),
        ("registry.example.com/other/app:v1", false),
    ] {
        let (code, json, out) = pullguard(&["policy", "explain", image, "--policy", imported.to_str().unwrap(), "--json"]);
        assert_eq!(code, if applies { 0 } else { 1 }, "{image}: {out}");
        assert_eq!(json["rule"] == "p-r", applies, "{image}: {out}");
    }

    // Notary attestors: certificates only, each a certificate notation-go takes in a
    // ca store (a leaf alone is not: notation-go, and so Kyverno, refuses every image).
    let chain = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../notation-core/tests/fixtures/chain.pem"),
    )
    .unwrap();
    let leaf: String = chain
        .lines()
        .take_while(|l| !l.starts_with("-----END"))
        .chain(["-----END CERTIFICATE-----"])
        .map(|l| format!("                {l}\n"))
        .collect();
    let notary = |entry: &str| {
        policy("ClusterPolicy", "", "\"registry.example.com/*\"", entry).replace(
            "    - imageReferences:",
            "    - type: Notary\n      imageReferences:",
        )
    };
    let leaf_only = notary(&format!(
        "      - entries:\n        - certificates:\n            cert: |-\n{leaf}"
    ));
    let keys_in_notary = notary(&keyed("", &pem));
    let sets = format!("{}{}", keyed("", &pem), keyed("", &pem));
    for (text, why) in [
        (policy("Policy", "", "\"registry.example.com/*\"", &keyed("", &pem)), "a namespaced Policy applies to one namespace"),
        (leaf_only, "notation-go refuses such a trust store"),
        (keys_in_notary, "a Notary attestor has certificates"),
        (policy("ClusterPolicy", "", "\"nginx:*\"", &keyed("", &pem)), "Docker Hub"),
        (policy("ClusterPolicy", "", "\"docker.io/library/*\"", &keyed("", &pem)), "Docker Hub"),
        (policy("ClusterPolicy", "", "\"*\"", &keyed("", &pem)).replace("[\"*\"]", "[\"*/app:*\"]"), "registry is a wildcard"),
        (policy("ClusterPolicy", "", "\"registry.example.com/ap?\"", &keyed("", &pem)), "? matches any one character"),
        (policy("ClusterPolicy", "", "\"registry.example.com/*\"", &keyed("", two_keys)), "2 entries must all pass"),
        (policy("ClusterPolicy", "", "\"registry.example.com/*\"", &keyed("count: 2\n        ", &pem)), "count 2 of 1 entries"),
        (policy("ClusterPolicy", "", "\"registry.example.com/*\"", &sets), "several attestor sets must all pass"),
        (policy("ClusterPolicy", "", "\"registry.example.com/*\"", &keyless("subject: a@b.c\n            ctlog:\n              ignoreSCT: true")), "ctlog.ignoreSCT"),
        (policy("ClusterPolicy", "", "\"registry.example.com/*\"", &keyless("subject: a@b.c\n            rekor:\n              url: https://rekor.sigstore.dev\n              ignoreTlog: true")), "keyless with rekor.ignoreTlog"),
        (policy("ClusterPolicy", "", "\"registry.example.com/*\"", &keyless("issuer: a\n            issuerRegExp: b")), "issuer and issuerRegExp must both match"),
        (policy("ClusterPolicy", "  failurePolicy: Ignore\n", "\"registry.example.com/*\"", &keyed("", &pem)), "failurePolicy: Ignore"),
        (policy("ClusterPolicy", "", "\"registry.example.com/*\"", &keyed("", &pem)).replace("          kinds: [Pod]", "          kinds: [Pod]\n          namespaces: [prod]"), "match selects by more than the kinds of pods"),
        (policy("ClusterPolicy", "", "\"registry.example.com/*\"", &keyed("", &pem)).replace("          kinds: [Pod]", "          kinds: [Pod]\n      subjects:\n      - kind: User\n        name: ci"), "match selects by more than the kinds of pods"),
        (policy("ClusterPolicy", "", "\"registry.example.com/*\"", &keyed("", &pem)).replace("    - imageReferences:", "    - skipImageReferences: [\"registry.example.com/dev/*\"]\n      imageReferences:"), "skipImageReferences cannot be expressed"),
        (policy("ClusterPolicy", "", "\"registry.example.com/*\"", &keyed("", "                k8s://ns/cosign-key\n")), "publicKeys must be PEM"),
        (format!("{}---\n{}", policy("ClusterPolicy", "", "\"registry.example.com/**\"", &keyed("", &pem)), policy("ClusterPolicy", "", "\"registry.example.com/team/*\"", &keyed("", &pem)).replace("name: p", "name: q")), "merge them by hand"),
    ] {
        let f = write("one.yaml", &text);
        let (code, out) = kyverno(&[&f]);
        assert_eq!(code, 1, "{why}: {out}");
        assert!(out.contains(why), "{why}: {out}");
        assert!(!out.contains("[[rule]]"), "{why}: {out}");
    }
}

/// Kyverno's type Notary: the attestor's certificates as a Notation `ca` trust store,
/// any identity, strict level (as Kyverno hands them to notation-go); the imported rule
/// gives notation-go's verdicts, asked with that same trust policy, on Notation-signed,
/// unsigned, untrusted, wrong-identity, expired, swapped and hand-made images.
#[test]
fn imported_kyverno_notary_rules_give_the_verdicts_notation_go_gives() {
    let nw = NotationWorld::start();
    let world = World::new();
    let registry = nw.get("REGISTRY");
    let repo = nw.get("REPO");
    let ca = std::fs::read_to_string(
        Path::new(nw.get("NOTATION_CONFIG")).join("truststore/x509/ca/acme/acme.crt"),
    )
    .unwrap();
    let indented: String = ca.lines().map(|l| format!("              {l}\n")).collect();
    let policy = format!(
        "apiVersion: kyverno.io/v2beta1\nkind: ClusterPolicy\nmetadata:\n  name: notary\nspec:\n  rules:\n  - name: sig\n    match:\n      any:\n      - resources:\n          kinds: [Pod]\n    verifyImages:\n    - type: Notary\n      imageReferences: [\"{repo}:*\"]\n      failureAction: Enforce\n      attestors:\n      - count: 1\n        entries:\n        - certificates:\n            cert: |-\n{indented}"
    );
    let f = world.dir.path().join("kyverno.yaml");
    std::fs::write(&f, &policy).unwrap();
    let (code, rules) = import_from("kyverno", &[&f], &world.keys);
    assert_eq!(code, 0, "{rules}");
    assert!(
        rules.contains("proofs = [\"notation\"]\nnotation_trust_stores = [\"ca:notary-sig-1\"]\nnotation_identities = [\"*\"]"),
        "{rules}"
    );
    let certs_d = world.dir.path().join("certs.d");
    std::fs::create_dir_all(certs_d.join(registry)).unwrap();
    std::fs::write(
        certs_d.join(registry).join("hosts.toml"),
        format!("server = \"http://{registry}\"\n"),
    )
    .unwrap();
    let toml = world.dir.path().join("imported.toml");
    std::fs::write(
        &toml,
        format!(
            "{}{rules}",
            world.daemon_section(&format!(
                "registry_config_path = \"{}\"\nregistry_timeout = \"5s\"\n",
                certs_d.display()
            ))
        ),
    )
    .unwrap();

    // notation-go with the trust policy Kyverno writes for it.
    let conf = world.dir.path().join("kyverno-notation");
    std::fs::create_dir_all(conf.join("truststore/x509/ca/kyverno")).unwrap();
    std::fs::write(conf.join("truststore/x509/ca/kyverno/cert.pem"), &ca).unwrap();
    std::fs::write(
        conf.join("trustpolicy.json"),
        r#"{"version": "1.0", "trustPolicies": [{"name": "kyverno", "registryScopes": ["*"], "signatureVerification": {"level": "strict"}, "trustStores": ["ca:kyverno"], "trustedIdentities": ["*"]}]}"#,
    )
    .unwrap();
    let mut allowed = Vec::new();
    for name in [
        "jws",
        "cose",
        "unsigned",
        "untrusted",
        "wrongid",
        "expired",
        "swapped",
        "noku",
        "forged",
    ] {
        let (image, digest) = nw.image(name);
        let (code, json, text) = pullguard(&[
            "verify",
            &image,
            "--digest",
            &digest,
            "--policy",
            toml.to_str().unwrap(),
            "--json",
        ]);
        assert!(code == 0 || code == 1, "{name}: {text}");
        let ours = json["allowed"] == true;
        let theirs = Command::new(nw.get("NOTATION_PEER"))
            .args(["verify", "--config"])
            .arg(&conf)
            .arg(format!("{repo}@{digest}"))
            .output()
            .unwrap()
            .status
            .success();
        assert_eq!(
            ours, theirs,
            "{name}: pullguard {ours} ({}), notation-go {theirs}",
            json["reason"]
        );
        if ours {
            allowed.push(name);
        }
    }
    // Any identity of the trusted CA: the wrong identity passes here, as in Kyverno.
    assert_eq!(allowed, ["jws", "cose", "wrongid", "forged"]);
}
