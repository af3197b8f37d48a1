//! trust-core alone: a whole chain, a 10,000-target targets.json, each signature scheme.
//! `cargo bench -p trust-core` (bench/run prints these beside the end-to-end figures).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use test_support::{manifest, Repo, TestKey};
use trust_core::{verify, RootAnchor, TagPolicy, VerifyOptions};

fn chain(c: &mut Criterion) {
    // A fixed instant: trust-core never reads the clock, and neither do its benches.
    let now = time::macros::datetime!(2026-06-01 00:00 UTC);
    let mut small = Repo::new("registry.test/bench/small", now);
    small
        .delegate("targets/releases", TestKey::p256(9), now)
        .targets
        .insert("v2".to_owned(), manifest("v2"));
    let small_files = small.files();
    c.bench_function(
        "verify chain (root, timestamp, snapshot, targets, releases)",
        |b| {
            b.iter(|| {
                let opts = VerifyOptions::new(&small.gun, now, RootAnchor::FirstUse);
                let repo = verify(&small_files, &opts).unwrap();
                repo.resolve_tag("v2", TagPolicy::Docker).unwrap()
            })
        },
    );

    let mut large = Repo::new("registry.test/bench/large", now);
    for i in 0..10_000 {
        let tag = format!("v{i}");
        large.targets.insert(tag.clone(), manifest(&tag));
    }
    let large_files = large.files();
    c.bench_function("verify chain with a 10,000-target targets.json", |b| {
        b.iter(|| {
            let opts = VerifyOptions::new(&large.gun, now, RootAnchor::FirstUse);
            let repo = verify(&large_files, &opts).unwrap();
            repo.resolve_tag("v9999", TagPolicy::Docker).unwrap()
        })
    });
    // Resolving in an already verified repository: what a cached verdict costs.
    let opts = VerifyOptions::new(&large.gun, now, RootAnchor::FirstUse);
    let verified = verify(&large_files, &opts).unwrap();
    c.bench_function(
        "resolve a tag in a verified 10,000-target repository",
        |b| b.iter(|| verified.resolve_tag("v5000", TagPolicy::Docker).unwrap()),
    );
}

fn schemes(c: &mut Criterion) {
    let msg = vec![7u8; 512];
    for (name, key) in [
        ("ed25519", TestKey::ed25519(5)),
        ("ecdsa P-256", TestKey::p256(6)),
    ] {
        let sig = key.sign(&msg);
        let method = sig["method"].as_str().unwrap().to_owned();
        let bytes = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            sig["sig"].as_str().unwrap(),
        )
        .unwrap();
        let public = trust_core::keys::PublicKey::new(key.keytype, &key.public);
        c.bench_function(&format!("signature check: {name}"), |b| {
            b.iter_batched(
                || (),
                |()| assert!(public.verify(&method, &msg, &bytes)),
                BatchSize::SmallInput,
            )
        });
    }
}

criterion_group!(benches, chain, schemes);
criterion_main!(benches);
