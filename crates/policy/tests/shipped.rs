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

#[test]
fn default_enforces_signatures_on_everything() {
    let p = Policy::load(&config("pullguard.toml")).unwrap();
    let r = rule(&p, "alpine");
    assert_eq!(
        (r.mode, r.require, r.on_unreachable),
        (Mode::Enforce, Require::Signed, OnUnreachable::Deny)
    );
    assert!(p.daemon.metrics.is_none(), "metrics are off by default");
}

#[test]
fn examples_mean_what_they_say() {
    let audit = Policy::load(&config("examples/audit-first.toml")).unwrap();
    assert_eq!(rule(&audit, "alpine").mode, Mode::Audit);

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
