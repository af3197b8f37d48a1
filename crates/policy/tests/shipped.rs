//! Every policy we ship parses and validates, and means what its comments say.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};

use policy::{ImageRef, Mode, OnUnreachable, Policy, Proof, ProofsRequired, Require};

fn config(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../config")
        .join(rel)
}

fn rule<'a>(p: &'a Policy, image: &str) -> &'a policy::Rule {
    p.rule_for(&ImageRef::parse(image).unwrap())
        .expect("a rule")
}

#[test]
fn every_shipped_file_parses() {
    let mut files = vec![config("pullguard.toml")];
    for e in std::fs::read_dir(config("examples")).unwrap() {
        files.push(e.unwrap().path());
    }
    assert!(files.len() >= 4);
    for f in files {
        Policy::load(&f).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Every rule of `p` requires a cosign signature checked against Sigstore's public-good
/// root shipped with pullguard, in audit mode, refusing when the registry is down; no
/// rule asks a trust server.
fn audits_sigstore_keyless_and_asks_no_trust_server(p: &Policy) {
    assert!(p.trust_servers.is_empty(), "{:?}", p.trust_servers);
    for r in &p.rules {
        assert_eq!(r.proofs, vec![Proof::Cosign], "{}", r.name);
        assert_eq!(
            (r.mode, r.require),
            (Mode::Audit, Require::Signed),
            "{}",
            r.name
        );
        assert_eq!(r.on_unreachable, OnUnreachable::Deny, "{}", r.name);
        assert_eq!(
            r.cosign.trusted_root.as_deref(),
            Some(Path::new("sigstore-public-good")),
            "{}",
            r.name
        );
    }
}

/// The default after Docker's Notary shutdown (2026-12-08): no rule asks a trust server
/// (none would answer), nothing is silently allowed (every rule requires a signature,
/// in audit mode, and says so), and the documented public signers are named with
/// Sigstore's public-good root shipped with pullguard.
#[test]
fn default_survives_the_notary_shutdown_and_allows_nothing_silently() {
    let p = Policy::load(&config("pullguard.toml")).unwrap();
    audits_sigstore_keyless_and_asks_no_trust_server(&p);
    let k8s = rule(&p, "registry.k8s.io/pause:3.10");
    assert_eq!(k8s.name, "kubernetes");
    assert_eq!(
        (
            k8s.cosign.identities[0].subject.as_deref(),
            k8s.cosign.identities[0]
                .issuer
                .as_deref()
                .unwrap_or_default()
        ),
        (
            Some("krel-trust@k8s-releng-prod.iam.gserviceaccount.com"),
            "https://accounts.google.com"
        )
    );
    assert_eq!(
        rule(&p, "gcr.io/distroless/static:nonroot").name,
        "distroless"
    );
    assert_eq!(rule(&p, "alpine").name, "everything-else");
    let notice = p.audit_notice().expect("an audit notice");
    assert!(
        notice.starts_with("every rule is in audit mode"),
        "{notice}"
    );
    assert!(p.lint().is_empty(), "{:?}", p.lint());
    assert!(p.daemon.metrics.is_none(), "metrics are off by default");
}

#[test]
fn examples_mean_what_they_say() {
    let audit = Policy::load(&config("examples/audit-first.toml")).unwrap();
    assert_eq!(rule(&audit, "alpine").mode, Mode::Audit);
    // It asks no trust server (notary.docker.io is gone since 2026-12-08).
    audits_sigstore_keyless_and_asks_no_trust_server(&audit);
    assert_eq!(rule(&audit, "ghcr.io/example-org/app:v1").name, "ours");
    assert!(audit.lint().is_empty(), "{:?}", audit.lint());

    let corp = Policy::load(&config("examples/private-registry.toml")).unwrap();
    let prod = rule(&corp, "registry.corp.example.com/prod/api:v3");
    assert_eq!(prod.name, "prod");
    assert_eq!(prod.roles, vec!["targets/releases".to_owned()]);
    assert_eq!(prod.on_unreachable, OnUnreachable::Cached);
    assert_eq!(
        rule(&corp, "registry.corp.example.com/tools/x:1").name,
        "corp"
    );
    assert_eq!(rule(&corp, "alpine").require, Require::Reject);

    let two = Policy::load(&config("examples/two-signers.toml")).unwrap();
    assert_eq!(
        rule(&two, "registry.corp.example.com/app:v1").roles_required,
        2
    );
}

#[test]
fn the_migration_examples_are_the_three_stages() {
    let stage = |f: &str| {
        let p = Policy::load(&config(&format!("examples/{f}"))).unwrap();
        let r = rule(&p, "registry.corp.example.com/team/app:v1").clone();
        (r.proofs, r.proofs_required)
    };
    assert_eq!(
        stage("migrate-1-either.toml"),
        (vec![Proof::NotaryV1, Proof::Cosign], ProofsRequired::Any)
    );
    assert_eq!(
        stage("migrate-2-audit-cosign.toml"),
        (vec![Proof::Cosign, Proof::NotaryV1], ProofsRequired::Any)
    );
    assert_eq!(stage("migrate-3-cosign.toml").0, vec![Proof::Cosign]);
}
