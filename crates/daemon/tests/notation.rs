//! Notation as a kind of proof, end to end: images signed by the Notary Project's
//! notation-go (tests/notation/peer; the notation CLI module is not served by the Go
//! module proxy) in a real docker-registry, judged by the real pullguardd, and
//! notation-go's own verifier asked about every image: the two must agree.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod harness;

use harness::{nth_event, verify, Daemon, NotationWorld, World};

fn config(world: &World, nw: &NotationWorld, rule: &str) -> String {
    let certs_d = nw.install(&world.keys);
    format!(
        "{}[trust_server.notary]\nurl = \"{}\"\nca_file = \"{}\"\ntimeout = \"2s\"\n\n[defaults]\ntofu = true\nnotation_trust_stores = [\"ca:acme\"]\nnotation_identities = [\"{}\"]\n\n[[rule]]\nname = \"app\"\nmatch = \"{}:*\"\n{rule}\n",
        world.daemon_section(&format!("registry_config_path = \"{}\"\nregistry_timeout = \"2s\"\n", certs_d.display())),
        nw.get("NOTARY_URL"),
        nw.get("NOTARY_CA"),
        nw.get("IDENTITY"),
        nw.get("REPO"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn notation_signatures_in_both_envelopes_every_refusal_and_notation_agrees() {
    let nw = NotationWorld::start();
    let world = World::new();
    world.write_config(&config(&world, &nw, "proofs = [\"notation\"]\n"));
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;

    for (name, want) in [
        ("jws", Ok("notation jws")),
        ("cose", Ok("notation cose")),
        ("unsigned", Err("no_signature")),
        ("untrusted", Err("untrusted_signer")),
        ("wrongid", Err("identity_mismatch")),
        ("expired", Err("expired")),
        ("swapped", Err("digest_mismatch")),
        ("noku", Err("untrusted_signer")),
        ("forged", Ok("notation jws")),
    ] {
        let (image, digest) = nw.image(name);
        let v = verify(&mut c, &image, &digest).await;
        match want {
            Ok(role) => {
                assert!(v.allowed, "{name}: {v:?}");
                assert_eq!(
                    (v.proof.as_str(), v.role.as_str()),
                    ("notation", role),
                    "{name}"
                );
                assert!(v.signers[0].contains("CN=pullguard signer"), "{v:?}");
            }
            Err(reason) => assert_eq!(
                (v.allowed, v.reason.as_str()),
                (false, reason),
                "{name}: {v:?}"
            ),
        }
        assert_eq!(
            nw.notation_verify(&image, &digest),
            v.allowed,
            "notation-go and pullguard disagree on {name}: {v:?}"
        );
    }
    let ev = nth_event(&world, "pull.rejected", 1).await;
    assert_eq!(ev["proofs"][0]["proof"], "notation", "{ev}");
}

/// RFC 3161 countersignatures (openssl's TSA behind tests/notation/tsa.py, asked by
/// notation-go when signing): a signature whose certificate has expired since counts when
/// a trusted authority stamped it within the certificate's life; a stamp by another
/// authority, or none where the rule names a tsa store, refuses; without a tsa store the
/// expired certificate refuses. notation-go agrees on each.
#[tokio::test(flavor = "multi_thread")]
async fn timestamp_countersignatures_from_a_real_tsa() {
    let nw = NotationWorld::start();
    let world = World::new();
    let stamped_rule = format!(
        "proofs = [\"notation\"]\n\n[[rule]]\nname = \"stamped\"\nmatch = \"{}:*\"\nproofs = [\"notation\"]\nnotation_trust_stores = [\"ca:acme\", \"tsa:testtsa\"]\n\n[[rule]]\nname = \"no-tsa\"\nmatch = \"{}@*\"\nproofs = [\"notation\"]\n",
        nw.get("STAMPED_REPO"),
        nw.get("STAMPED_REPO")
    );
    world.write_config(&config(&world, &nw, &stamped_rule));
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    for (name, want) in [
        ("stamped", ""),
        ("badstamp", "untrusted_timestamp"),
        ("nostamp", "untrusted_timestamp"),
    ] {
        let (image, digest) = nw.stamped(name);
        let v = verify(&mut c, &image, &digest).await;
        assert_eq!(
            (v.allowed, v.reason.as_str()),
            (want.is_empty(), want),
            "{name}: {v:?}"
        );
        assert_eq!(
            nw.notation_verify(&image, &digest),
            v.allowed,
            "notation-go disagrees on {name}"
        );
    }
    // The same stamped signature under a rule without a tsa store: the certificate has
    // expired, and nothing trusted says when it signed.
    let (_, digest) = nw.stamped("stamped");
    let v = verify(&mut c, &format!("{}@{digest}", nw.get("STAMPED_REPO")), "").await;
    assert_eq!(
        (v.allowed, v.rule.as_str(), v.reason.as_str()),
        (false, "no-tsa", "certificate_expired"),
        "{v:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn any_of_three_proofs_counts_and_the_verdict_names_it() {
    let nw = NotationWorld::start();
    let world = World::new();
    world.write_config(&config(
        &world,
        &nw,
        &format!(
            "proofs = [\"notary-v1\", \"cosign\", \"notation\"]\nproofs_required = \"any\"\ntrust_server = \"notary\"\ncosign_keys = [\"{}\"]\ncosign_tlog = false\n",
            nw.get("COSIGN_KEY")
        ),
    ));
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    for (name, proof) in [
        ("notary", "notary-v1"),
        ("cosign", "cosign"),
        ("jws", "notation"),
        ("cose", "notation"),
    ] {
        let (image, digest) = nw.image(name);
        let v = verify(&mut c, &image, &digest).await;
        assert!(v.allowed, "{name}: {v:?}");
        assert_eq!(v.proof, proof, "{name}: {v:?}");
    }
    let (image, digest) = nw.image("unsigned");
    let v = verify(&mut c, &image, &digest).await;
    assert!(!v.allowed, "{v:?}");
    let asked: Vec<&str> = v.proofs.iter().map(|p| p.proof.as_str()).collect();
    assert_eq!(asked, vec!["notary-v1", "cosign", "notation"], "{v:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn revocation_refuse_and_the_permissive_level() {
    let nw = NotationWorld::start();
    let world = World::new();
    world.write_config(&config(
        &world,
        &nw,
        "proofs = [\"notation\"]\nnotation_revocation = \"refuse\"\n\n[[rule]]\nname = \"permissive\"\nmatch = \"127.0.0.1:*/notation/app@*\"\nproofs = [\"notation\"]\nnotation_verification = \"permissive\"\n",
    ));
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    let (image, digest) = nw.image("jws");
    let v = verify(&mut c, &image, &digest).await;
    assert_eq!(
        (v.allowed, v.reason.as_str()),
        (false, "revocation_unknown"),
        "{v:?}"
    );
    // Permissive: an expired signature is logged, not refused; an untrusted one is refused.
    let (_, expired) = nw.image("expired");
    let v = verify(&mut c, &format!("{}@{expired}", nw.get("REPO")), "").await;
    assert!(
        v.allowed && v.rule == "permissive" && v.role.contains("logged"),
        "{v:?}"
    );
    // audit_level_shows_the_failed_check: what the level let through is a failed proof
    // in the verdict (and its event), with the check and the level, for alerting.
    assert_eq!(v.proof, "notation", "{v:?}");
    assert!(
        !v.proofs[0].passed
            && v.proofs[0].reason == "expired"
            && v.proofs[0]
                .message
                .contains("let through by notation_verification = \"permissive\""),
        "{v:?}"
    );
    let (_, untrusted) = nw.image("untrusted");
    let v = verify(&mut c, &format!("{}@{untrusted}", nw.get("REPO")), "").await;
    assert_eq!(v.reason, "untrusted_signer", "{v:?}");
}

/// The operator's path from Notation: `pullguard policy import-notation` on the very
/// trustpolicy.json and trust store notation-go verified with; the rules it prints judge
/// the images as notation-go does.
#[tokio::test(flavor = "multi_thread")]
async fn an_imported_notation_trust_policy_judges_as_notation_does() {
    let nw = NotationWorld::start();
    let world = World::new();
    let conf = std::path::Path::new(nw.get("NOTATION_CONFIG"));
    let out = std::process::Command::new(harness::bin("pullguard"))
        .args(["policy", "import-notation"])
        .arg(conf.join("trustpolicy.json"))
        .arg("--trust-store")
        .arg(conf.join("truststore"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rules = String::from_utf8(out.stdout).unwrap();
    let certs_d = nw.install(&world.keys);
    world.write_config(&format!(
        "{}{rules}",
        world.daemon_section(&format!(
            "registry_config_path = \"{}\"\n",
            certs_d.display()
        ))
    ));
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
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
        let v = verify(&mut c, &image, &digest).await;
        assert_eq!(
            v.allowed,
            nw.notation_verify(&image, &digest),
            "{name}: {v:?}\n{rules}"
        );
        // By digest alone too (the imported rules cover REPO@*).
        let v = verify(&mut c, &format!("{}@{digest}", nw.get("REPO")), "").await;
        assert_eq!(
            v.allowed,
            nw.notation_verify(&image, &digest),
            "{name} by digest: {v:?}"
        );
    }
    // The second trust policy names a tsa store: timestamps required and checked.
    for name in ["stamped", "badstamp", "nostamp"] {
        let (image, digest) = nw.stamped(name);
        let v = verify(&mut c, &image, &digest).await;
        assert_eq!(
            v.allowed,
            nw.notation_verify(&image, &digest),
            "{name}: {v:?}\n{rules}"
        );
    }
}

/// The attack window: a verdict kept for later — here the one `on_unreachable =
/// "cached"` serves while the registry is down — answered for a signature past its own
/// `io.cncf.notary.expiry`. Signed now by notation-go with an 8 s expiry: kept and
/// served during the outage before it, refused as `expired` after it.
#[tokio::test(flavor = "multi_thread")]
async fn a_verdict_kept_for_an_outage_is_not_served_past_the_signatures_expiry() {
    let nw = NotationWorld::start();
    let dir = std::path::Path::new(nw.get("NOTARY_CA"))
        .ancestors()
        .nth(3)
        .unwrap()
        .to_owned();
    let (image, digest) = nw.image("unsigned");
    let repo = image.rsplit_once(':').unwrap().0;
    let signed_at = std::time::Instant::now();
    let st = std::process::Command::new(nw.get("NOTATION_PEER"))
        .arg("sign")
        .arg("--key")
        .arg(dir.join("pki/signer.key"))
        .arg("--cert")
        .arg(dir.join("pki/signer.crt"))
        .args(["--envelope", "jws", "--expiry", "8s"])
        .arg(format!("{repo}@{digest}"))
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let world = World::new();
    world.write_config(&config(
        &world,
        &nw,
        "proofs = [\"notation\"]\non_unreachable = \"cached\"\n",
    ));
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    let v = verify(&mut c, &image, &digest).await;
    assert!(v.allowed, "{v:?}");
    harness::kill(nw.get("REGISTRY_PID"));
    // Past the 1 s cache: the lookup finds no registry, and the kept verdict answers.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    if signed_at.elapsed() < std::time::Duration::from_secs(7) {
        let v = verify(&mut c, &image, &digest).await;
        assert!(v.allowed, "kept for the outage: {v:?}");
    }
    let left = std::time::Duration::from_secs(10).saturating_sub(signed_at.elapsed());
    tokio::time::sleep(left).await;
    let v = verify(&mut c, &image, &digest).await;
    assert_eq!((v.allowed, v.reason.as_str()), (false, "expired"), "{v:?}");
    assert!(v.message.contains("stopped counting"), "{v:?}");
}
