//! cosign as a kind of proof, end to end: images signed by the real cosign (both storage
//! layouts) and the real notary CLI in a real docker-registry and notary-server, judged by
//! the real pullguardd; the real `cosign verify` asked about every image as the peer.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod harness;

use std::time::Duration;

use harness::{nth_event, verify, CosignWorld, Daemon, World};

/// pullguardd's config: the registry reached through hosts.toml, notary as trust server.
fn config(world: &World, cw: &CosignWorld, rule: &str) -> String {
    format!(
        "{}[trust_server.notary]\nurl = \"{}\"\nca_file = \"{}\"\ntimeout = \"2s\"\n\n[defaults]\ntofu = true\ncosign_keys = [\"{}\"]\ncosign_tlog = false\n\n[[rule]]\nname = \"app\"\nmatch = \"{}:*\"\n{rule}\n",
        world.daemon_section(&format!(
            "registry_config_path = \"{}\"\nregistry_timeout = \"2s\"\n",
            cw.certs_d().display()
        )),
        cw.get("NOTARY_URL"),
        cw.get("NOTARY_CA"),
        cw.get("KEY_A"),
        cw.get("REPO"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn cosign_signed_images_in_both_layouts_and_every_refusal() {
    let cw = CosignWorld::start();
    let world = World::new();
    world.write_config(&config(&world, &cw, "proofs = [\"cosign\"]\n"));
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    let key_id = {
        let pem = std::fs::read(cw.get("KEY_A")).unwrap();
        sigstore_id(&pem)
    };

    for (name, layout) in [("classic", "cosign classic"), ("bundle", "cosign bundle")] {
        let (image, digest) = cw.image(name);
        let v = verify(&mut c, &image, &digest).await;
        assert!(v.allowed, "{name}: {v:?}");
        assert_eq!((v.proof.as_str(), v.role.as_str()), ("cosign", layout));
        assert_eq!(v.digest, digest);
        assert_eq!(v.signers, vec![key_id.clone()], "the signer is key A's ID");
        assert!(
            cw.cosign_verify(cw.get("KEY_A"), &digest),
            "cosign verify agrees on {name}"
        );
    }

    // referrers_flood: 300 referrers of another type in front of the signature (SBOMs,
    // junk) once refused the image as registry_unreachable ("more than 256"); they are
    // filtered by type first, and passed over.
    let (image, digest) = cw.image("flooded");
    let v = verify(&mut c, &image, &digest).await;
    assert!(v.allowed && v.role == "cosign bundle", "flooded: {v:?}");
    assert!(
        cw.cosign_verify(cw.get("KEY_A"), &digest),
        "cosign verify agrees on flooded"
    );

    // Every refusal, each with its own reason; cosign verify refuses each too. A
    // Notary-only image is refused by a rule that accepts cosign alone.
    for (name, reason) in [
        ("unsigned", "no_signature"),
        ("notary", "no_signature"),
        ("wrongkey", "bad_signature"),
        ("retagged", "digest_mismatch"),
        ("tampered", "bad_signature"),
    ] {
        let (image, digest) = cw.image(name);
        let v = verify(&mut c, &image, &digest).await;
        assert_eq!(
            (v.allowed, v.reason.as_str()),
            (false, reason),
            "{name}: {v:?}"
        );
        assert_eq!(v.proofs.len(), 1, "{name}: {v:?}");
        assert_eq!(
            (v.proofs[0].proof.as_str(), v.proofs[0].passed),
            ("cosign", false)
        );
        assert!(
            !cw.cosign_verify(cw.get("KEY_A"), &digest),
            "cosign verify accepts {name}"
        );
    }
    // The other key's signature is good under the other key (so the refusal above is the
    // key, not the signature).
    assert!(cw.cosign_verify(cw.get("KEY_B"), &cw.image("wrongkey").1));

    // A verdict asked by tag alone: the registry names the digest.
    let (image, digest) = cw.image("bundle");
    let v = verify(&mut c, &image, "").await;
    assert!(v.allowed && v.digest == digest, "{v:?}");

    let ev = nth_event(&world, "pull.rejected", 1).await;
    assert_eq!(ev["proofs"][0]["proof"], "cosign", "{ev}");
    assert_eq!(ev["proofs"][0]["reason"], "no_signature", "{ev}");
}

/// referrers_paged: a registry with the OCI 1.1 referrers API (olareg) pages its answer.
/// The signature behind 60 other referrers, on the 4th page, is found by following
/// `Link: rel=next` (a relative link, `rel` unquoted, as olareg writes it); cosign v3.1.3
/// misses it (a listed difference, docs/sigstore-differences.md). Behind 200, on the
/// 11th page, past the pages pullguard reads, the image is refused as
/// `lookup_budget_exceeded`, never as unsigned.
#[tokio::test(flavor = "multi_thread")]
async fn referrers_paged_by_a_real_registry_are_followed_and_bounded() {
    let cw = CosignWorld::start();
    let world = World::new();
    let olareg = cw.get("OLAREG");
    world.write_config(&format!(
        "{}[defaults]\ncosign_keys = [\"{}\"]\ncosign_tlog = false\n\n[[rule]]\nname = \"paged\"\nmatch = \"{olareg}/cosign/app:*\"\nproofs = [\"cosign\"]\n",
        world.daemon_section(&format!(
            "registry_config_path = \"{}\"\nregistry_timeout = \"5s\"\n",
            cw.certs_d().display()
        )),
        cw.get("KEY_A"),
    ));
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    let repo = format!("{olareg}/cosign/app");
    let cosign_finds = |digest: &str| {
        std::process::Command::new(cw.get("COSIGN"))
            .args([
                "verify",
                "--key",
                cw.get("KEY_A"),
                "--insecure-ignore-tlog",
                "--allow-http-registry",
            ])
            .arg(format!("{repo}@{digest}"))
            .output()
            .unwrap()
            .status
            .success()
    };

    // The premise: the first page has a next link and not the signature.
    let paged = cw.get("DIGEST_PAGED").to_owned();
    let out = std::process::Command::new("curl")
        .args([
            "-sfD",
            "-",
            &format!("http://{olareg}/v2/cosign/app/referrers/{paged}"),
        ])
        .output()
        .unwrap();
    let first = String::from_utf8_lossy(&out.stdout);
    assert!(
        first
            .to_ascii_lowercase()
            .contains("link: </v2/cosign/app/referrers/"),
        "{first}"
    );
    assert!(
        !first.contains("sigstore.bundle"),
        "the signature is not on page 1: {first}"
    );

    let v = verify(&mut c, &format!("{repo}:paged"), &paged).await;
    assert!(v.allowed && v.role == "cosign bundle", "paged: {v:?}");
    assert!(
        !cosign_finds(&paged),
        "cosign now finds a signature past the first page: drop the difference from docs/sigstore-differences.md"
    );

    let buried = cw.get("DIGEST_BURIED").to_owned();
    let v = verify(&mut c, &format!("{repo}:buried"), &buried).await;
    assert_eq!(
        (v.allowed, v.reason.as_str()),
        (false, "lookup_budget_exceeded"),
        "buried: {v:?}"
    );
    assert!(
        v.message.contains("more referrers than pullguard reads"),
        "{v:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn accepting_either_proof_names_the_one_that_counted() {
    let cw = CosignWorld::start();
    let world = World::new();
    world.write_config(&config(
        &world,
        &cw,
        "proofs = [\"notary-v1\", \"cosign\"]\nproofs_required = \"any\"\ntrust_server = \"notary\"\n",
    ));
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;

    let (image, digest) = cw.image("classic");
    let v = verify(&mut c, &image, &digest).await;
    assert!(v.allowed, "{v:?}");
    assert_eq!(v.proof, "cosign", "signed with cosign only: {v:?}");
    let asked: Vec<(&str, bool)> = v
        .proofs
        .iter()
        .map(|p| (p.proof.as_str(), p.passed))
        .collect();
    assert_eq!(asked, vec![("notary-v1", false), ("cosign", true)]);
    assert_eq!(v.proofs[0].reason, "unknown_tag");
    // Who each kind asked and until when it vouches is per proof; the API's top-level
    // Notary fields come from the notary-v1 entry (asked, but it did not count here).
    let sources: Vec<(&str, &str)> = v
        .proofs
        .iter()
        .map(|p| (p.source.as_str(), p.expires.as_str()))
        .collect();
    assert_eq!(sources, vec![("notary", ""), ("", "")], "{v:?}");
    assert_eq!(
        (v.trust_server.as_str(), v.timestamp_expires.as_str()),
        ("notary", ""),
        "{v:?}"
    );

    let (image, digest) = cw.image("notary");
    let v = verify(&mut c, &image, &digest).await;
    assert!(v.allowed, "{v:?}");
    assert_eq!(
        (v.proof.as_str(), v.proofs.len()),
        ("notary-v1", 1),
        "cosign is not asked once Notary vouched: {v:?}"
    );
    assert!(v.proofs[0].expires.starts_with("20"), "{v:?}");
    assert_eq!(v.timestamp_expires, v.proofs[0].expires, "{v:?}");
    assert_eq!(v.proofs[0].source, "notary", "{v:?}");

    let (image, digest) = cw.image("unsigned");
    let v = verify(&mut c, &image, &digest).await;
    assert!(!v.allowed, "{v:?}");
    assert_eq!(v.reason, "no_signature", "{v:?}");
    assert!(
        v.message.contains("notary-v1:") && v.message.contains("cosign:"),
        "{}",
        v.message
    );

    // The events say which proof counted, and why each other failed.
    let allowed = nth_event(&world, "pull.allowed", 1).await;
    assert_eq!(allowed["proof"], "cosign", "{allowed}");
    assert_eq!(allowed["proofs"][0]["proof"], "notary-v1", "{allowed}");
    assert_eq!(allowed["proofs"][0]["passed"], false, "{allowed}");
    assert_eq!(allowed["proofs"][1]["passed"], true, "{allowed}");
    let rejected = nth_event(&world, "pull.rejected", 1).await;
    assert_eq!(
        rejected["proofs"].as_array().map(Vec::len),
        Some(2),
        "{rejected}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn requiring_both_proofs_refuses_an_image_with_one() {
    let cw = CosignWorld::start();
    let world = World::new();
    // proofs_required defaults to "all".
    world.write_config(&config(
        &world,
        &cw,
        "proofs = [\"notary-v1\", \"cosign\"]\ntrust_server = \"notary\"\n",
    ));
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;

    let (image, digest) = cw.image("both");
    let v = verify(&mut c, &image, &digest).await;
    assert!(v.allowed, "{v:?}");
    assert_eq!(v.proof, "notary-v1,cosign");
    assert_eq!(
        v.signers.len(),
        2,
        "Notary's signer and cosign's key: {v:?}"
    );
    // By tag alone: Notary resolves the tag, cosign is asked about that digest.
    let v = verify(&mut c, &image, "").await;
    assert!(v.allowed && v.digest == digest, "{v:?}");

    let (image, digest) = cw.image("notary");
    let v = verify(&mut c, &image, &digest).await;
    assert_eq!(
        (v.allowed, v.reason.as_str()),
        (false, "no_signature"),
        "{v:?}"
    );
    assert!(
        v.message.contains("proofs_required = \"all\""),
        "{}",
        v.message
    );
    let (image, digest) = cw.image("classic");
    let v = verify(&mut c, &image, &digest).await;
    assert_eq!(
        (v.allowed, v.reason.as_str()),
        (false, "unknown_tag"),
        "{v:?}"
    );
    assert_eq!(v.proofs.len(), 1, "the first refusal settles it: {v:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_registry_follows_on_unreachable() {
    let cw = CosignWorld::start();
    let world = World::new();
    world.write_config(&config(
        &world,
        &cw,
        "proofs = [\"cosign\"]\non_unreachable = \"cached\"\n\n[[rule]]\nname = \"strict\"\nmatch = \"**\"\nproofs = [\"cosign\"]\n",
    ));
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    let (image, digest) = cw.image("classic");
    assert!(verify(&mut c, &image, &digest).await.allowed);
    let strict = format!("{}@{digest}", cw.get("REPO"));
    assert!(
        verify(&mut c, &strict, "").await.allowed,
        "the catch-all rule, by digest"
    );

    cw.stop_registry();
    // Past cache_ttl (1 s): the verdict must be made again, and the registry is gone.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let v = verify(&mut c, &image, &digest).await;
    assert!(
        v.allowed,
        "on_unreachable = cached: the signature verified earlier answers: {v:?}"
    );
    let v = verify(&mut c, &strict, "").await;
    assert_eq!(
        (v.allowed, v.reason.as_str()),
        (false, "registry_unreachable"),
        "{v:?}"
    );
    let (other, other_digest) = cw.image("bundle");
    let v = verify(&mut c, &other, &other_digest).await;
    assert_eq!(
        v.reason, "registry_unreachable",
        "nothing cached for it: {v:?}"
    );
    let ev = nth_event(&world, "trust.fetch_failed", 1).await;
    assert_eq!(ev["reason"], "registry_unreachable", "{ev}");
    assert_eq!(ev["proof"], "cosign", "{ev}");
}

/// The key ID pullguard names a cosign key by: hex SHA-256 of its SubjectPublicKeyInfo.
fn sigstore_id(pem: &[u8]) -> String {
    sigstore_core::PublicKey::from_pem(pem)
        .unwrap()
        .id()
        .to_owned()
}

/// docs/migrating-from-dct.md's three stages on one node: accept either, audit cosign,
/// require cosign; `policy diff` says what the last step would refuse.
#[tokio::test(flavor = "multi_thread")]
async fn the_migration_stages_and_what_policy_diff_says_of_the_last() {
    let cw = CosignWorld::start();
    let world = World::new();
    let stage = |n: usize, rule: &str| {
        let f = world.dir.path().join(format!("stage{n}.toml"));
        std::fs::write(&f, config(&world, &cw, rule)).unwrap();
        f
    };
    let either = stage(1, "proofs = [\"notary-v1\", \"cosign\"]\nproofs_required = \"any\"\ntrust_server = \"notary\"\n");
    let audit = stage(2, "proofs = [\"cosign\", \"notary-v1\"]\nproofs_required = \"any\"\ntrust_server = \"notary\"\n");
    let cosign = stage(3, "proofs = [\"cosign\"]\n");
    let list = world.dir.path().join("images.txt");
    let names = ["classic", "bundle", "notary", "both", "unsigned"];
    // By tag: the registry (cosign) and the trust data (Notary) resolve each.
    let lines: Vec<String> = names.iter().map(|n| cw.image(n).0).collect();
    std::fs::write(&list, lines.join("\n")).unwrap();
    let diff = |old: &std::path::Path, new: &std::path::Path| {
        let out = std::process::Command::new(harness::bin("pullguard"))
            .args(["policy", "diff"])
            .arg(old)
            .arg(new)
            .arg("--images")
            .arg(&list)
            .arg("--json")
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{e}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code(), v)
    };
    // Stage 1 → 2 allows and refuses the same images (only the reason named for the
    // unsigned one changes: the last proof asked is another).
    let (_, v) = diff(&either, &audit);
    for r in v["results"].as_array().unwrap() {
        assert_eq!(r["old"]["allowed"], r["new"]["allowed"], "{r:#}");
    }
    // Stage 2 → 3: the image signed with Notary alone would be refused, and only it.
    let (code, v) = diff(&audit, &cosign);
    assert_eq!(code, Some(1), "{v:#}");
    let refused_now: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["old"]["allowed"] == true && r["new"]["allowed"] == false)
        .map(|r| r["image"].as_str().unwrap())
        .collect();
    assert_eq!(refused_now, vec![lines[2].as_str()], "{v:#}");

    // Stage 2 on the daemon: a Notary-only pull is allowed, and its event says cosign
    // did not vouch (the audit).
    world.write_config(&std::fs::read_to_string(&audit).unwrap());
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    let (image, digest) = cw.image("notary");
    let v = verify(&mut c, &image, &digest).await;
    assert!(v.allowed && v.proof == "notary-v1", "{v:?}");
    let ev = nth_event(&world, "pull.allowed", 1).await;
    assert_eq!(ev["proofs"][0]["proof"], "cosign", "{ev}");
    assert_eq!(ev["proofs"][0]["passed"], false, "{ev}");
    assert_eq!(ev["proofs"][0]["reason"], "no_signature", "{ev}");
}

/// A rule that requires the transparency log (the default, with a trusted root) refuses
/// cosign's --tlog-upload=false signatures in both layouts, and a keyless rule refuses a
/// key's signature: `tlog_missing` and `identity_mismatch` end to end.
#[tokio::test(flavor = "multi_thread")]
async fn transparency_log_and_keyless_rules_refuse_what_they_cannot_prove() {
    let cw = CosignWorld::start();
    let world = World::new();
    // A trusted root that trusts nothing: enough to say what is missing.
    let root = world.dir.path().join("trusted_root.json");
    std::fs::write(
        &root,
        r#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","tlogs":[],"certificateAuthorities":[],"ctlogs":[],"timestampAuthorities":[]}"#,
    )
    .unwrap();
    let rules = format!(
        "proofs = [\"cosign\"]\ncosign_tlog = true\ntrusted_root = \"{}\"\n\n[[rule]]\nname = \"keyless\"\nmatch = \"{}@*\"\nproofs = [\"cosign\"]\ncosign_keys = []\ncosign_identities = [{{ issuer = \"https://token.actions.githubusercontent.com\", subject_regex = \"https://github.com/org/.*\" }}]\ntrusted_root = \"{}\"\n",
        root.display(),
        cw.get("REPO"),
        root.display()
    );
    world.write_config(&config(&world, &cw, &rules));
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    for name in ["classic", "bundle"] {
        let (image, digest) = cw.image(name);
        let v = verify(&mut c, &image, &digest).await;
        assert_eq!(
            (v.allowed, v.reason.as_str()),
            (false, "tlog_missing"),
            "{name}: {v:?}"
        );
    }
    let (_, digest) = cw.image("bundle");
    let v = verify(&mut c, &format!("{}@{digest}", cw.get("REPO")), "").await;
    assert_eq!(
        (v.allowed, v.rule.as_str(), v.reason.as_str()),
        (false, "keyless", "identity_mismatch"),
        "{v:?}"
    );
}

/// A registry that wants a login: signatures are read with the credentials of
/// `registry_auth_file` (a docker config.json); without them the pull is refused as
/// `registry_auth_failed` (an answer, not an outage: `on_unreachable` does not apply),
/// saying which setting to give.
#[tokio::test(flavor = "multi_thread")]
async fn a_registry_that_wants_a_login_is_read_with_the_credentials_file() {
    let cw = CosignWorld::start();
    let world = World::new();
    let image = format!("{}:v1", cw.get("PRIVATE"));
    let digest = cw.get("PRIVATE_DIGEST").to_owned();
    let rule = |auth: &str| {
        let text = config(&world, &cw, "proofs = [\"cosign\"]\n");
        format!(
            "{text}\n[[rule]]\nname = \"private\"\nmatch = \"{}:*\"\nproofs = [\"cosign\"]\n",
            cw.get("PRIVATE")
        )
        .replacen("registry_timeout", &format!("{auth}registry_timeout"), 1)
    };
    world.write_config(&rule(""));
    let mut daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    let v = verify(&mut c, &image, &digest).await;
    assert_eq!(
        (v.allowed, v.reason.as_str()),
        (false, "registry_auth_failed"),
        "{v:?}"
    );
    assert!(
        v.message.contains("401") && v.message.contains("registry_auth_file"),
        "{}",
        v.message
    );
    daemon.stop();

    world.write_config(&rule(&format!(
        "registry_auth_file = \"{}\"\n",
        cw.get("DOCKER_CONFIG_FILE")
    )));
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    let v = verify(&mut c, &image, &digest).await;
    assert!(v.allowed && v.proof == "cosign", "{v:?}");
}

/// The shipped default after Docker's Notary shutdown: no rule asks a trust server, so
/// no pull is refused with trust_server_unreachable; an unsigned image is recorded as
/// pull.audited (not silently allowed), and pullguardd says at start that it audits.
#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_default_audits_instead_of_asking_the_retired_notary() {
    let cw = CosignWorld::start();
    let world = World::new();
    let shipped =
        std::fs::read_to_string(harness::repo_root().join("config/pullguard.toml")).unwrap();
    // The shipped file from [defaults] on, under this test's [daemon] section.
    let rules = &shipped[shipped.find("[defaults]").unwrap()..];
    world.write_config(&format!(
        "{}{rules}",
        world.daemon_section(&format!(
            "registry_config_path = \"{}\"\nregistry_timeout = \"2s\"\n",
            cw.certs_d().display()
        ))
    ));
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    for (n, name) in ["unsigned", "notary", "classic"].into_iter().enumerate() {
        let (image, digest) = cw.image(name);
        let v = verify(&mut c, &image, &digest).await;
        assert!(
            v.allowed && v.mode == "audit" && v.rule == "everything-else",
            "{name}: {v:?}"
        );
        assert_ne!(v.reason, "trust_server_unreachable", "{name}: {v:?}");
        if name != "classic" {
            // (classic: a key signature, which no keyless identity of the default accepts)
            assert_eq!(v.reason, "no_signature", "{name}: {v:?}");
        }
        let ev = nth_event(&world, "pull.audited", n + 1).await;
        assert_eq!(ev["image"], image.as_str(), "{ev}");
    }
    let started = nth_event(&world, "daemon.started", 1).await;
    assert!(
        started["message"]
            .as_str()
            .unwrap()
            .contains("every rule is in audit mode (kubernetes, distroless, everything-else)"),
        "{started}"
    );
}

/// Real keyless signatures in cosign's classic layout, made against Sigstore's
/// public-good instance and served by a registry (tests/cosign/push-classic.py), judged by
/// pullguardd against the public-good root it ships: each allowed for its signer with the
/// signer named, refused for another identity.
#[tokio::test(flavor = "multi_thread")]
async fn real_public_good_classic_keyless_signatures_from_a_registry() {
    let cw = CosignWorld::start();
    let world = World::new();
    let fixtures = [
        ("CONTAINERS_IMAGE_FULCIO_REKOR", "mitr@redhat.com", "https://github.com/login/oauth"),
        ("CONTAINERS_IMAGE_REKOR_LOOSE", "mitr@redhat.com", "https://github.com/login/oauth"),
        (
            "GITHUB_ACTIONS_GO_BAZEL",
            "https://github.com/salrashid123/go-bazel-github-workflow/.github/workflows/release.yaml@refs/tags/v0.0.30",
            "https://token.actions.githubusercontent.com",
        ),
        (
            "GOOGLE_SERVICE_ACCOUNT_CLOUD_BUILD",
            "cosign-svc-account@mineral-minutia-820.iam.gserviceaccount.com",
            "https://accounts.google.com",
        ),
    ];
    // (The first line belongs to config()'s own rule.)
    let mut rules = "proofs = [\"cosign\"]\n".to_owned();
    for (name, subject, issuer) in fixtures {
        let image = cw.get(&format!("PUBLIC_GOOD_{name}"));
        let repo = image.split('@').next().unwrap();
        rules.push_str(&format!(
            "\n[[rule]]\nname = \"{}\"\nmatch = \"{repo}@*\"\nproofs = [\"cosign\"]\ncosign_keys = []\ncosign_tlog = true\ntrusted_root = \"sigstore-public-good\"\ncosign_identities = [{{ subject = \"{subject}\", issuer = \"{issuer}\" }}]\n",
            name.to_ascii_lowercase()
        ));
    }
    // Kubernetes' release identity, over a signature another account made.
    let k8s = cw
        .get("PUBLIC_GOOD_GOOGLE_SERVICE_ACCOUNT_CLOUD_BUILD")
        .replace("cloud-build@", "cloud-build-as-k8s@");
    let (k8s_repo, k8s_digest) = k8s.split_once('@').unwrap();
    rules.push_str(&format!(
        "\n[[rule]]\nname = \"k8s\"\nmatch = \"{k8s_repo}@*\"\nproofs = [\"cosign\"]\ncosign_keys = []\ntrusted_root = \"sigstore-public-good\"\ncosign_identities = [{{ subject = \"krel-trust@k8s-releng-prod.iam.gserviceaccount.com\", issuer = \"https://accounts.google.com\" }}]\nsignature_repository = \"{}\"\n",
        cw.get("PUBLIC_GOOD_GOOGLE_SERVICE_ACCOUNT_CLOUD_BUILD").split('@').next().unwrap()
    ));
    world.write_config(&config(&world, &cw, &rules));
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    for (name, subject, _) in fixtures {
        let image = cw.get(&format!("PUBLIC_GOOD_{name}"));
        let v = verify(&mut c, image, "").await;
        assert!(v.allowed, "{name}: {v:?}");
        assert_eq!(
            (v.rule.as_str(), v.proof.as_str(), v.role.as_str()),
            (
                name.to_ascii_lowercase().as_str(),
                "cosign",
                "cosign classic"
            ),
            "{v:?}"
        );
        assert!(
            v.signers.iter().any(|s| s.contains(subject)),
            "{name}: {v:?}"
        );
    }
    let v = verify(&mut c, &format!("{k8s_repo}@{k8s_digest}"), "").await;
    assert_eq!(
        (v.allowed, v.rule.as_str(), v.reason.as_str()),
        (false, "k8s", "identity_mismatch"),
        "{v:?}"
    );
}

/// A plain-HTTP registry asked over HTTPS because no hosts.toml declares it: the refusal
/// says so and names what to write, instead of only rustls's "corrupt message".
#[tokio::test(flavor = "multi_thread")]
async fn a_plain_http_registry_without_hosts_toml_names_the_fix() {
    let cw = CosignWorld::start();
    let world = World::new();
    let empty = world.dir.path().join("no-certs.d");
    std::fs::create_dir_all(&empty).unwrap();
    let text = config(&world, &cw, "proofs = [\"cosign\"]\n")
        .replace(cw.certs_d().to_str().unwrap(), empty.to_str().unwrap());
    world.write_config(&text);
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    let (image, digest) = cw.image("classic");
    let v = verify(&mut c, &image, &digest).await;
    assert_eq!(
        (v.allowed, v.reason.as_str()),
        (false, "registry_unreachable"),
        "{v:?}"
    );
    assert!(
        v.message
            .contains("answered plain HTTP on a TLS connection")
            && v.message.contains("registry_config_path"),
        "{}",
        v.message
    );
}
