//! Attacks through the image's registry on the registry-backed proofs (cosign,
//! Notation), each against real servers: what a hostile registry can make pullguardd
//! send, and what it can make pullguardd refuse or allow.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod harness;

use harness::{verify, Daemon, Served, World};

/// A real HTTPS docker-registry whose token realm is plain HTTP, and the capture
/// service behind that realm (tests/registry/serve-hostile-realm.sh).
fn hostile_realm() -> Served {
    Served::start(
        "tests/registry/serve-hostile-realm.sh",
        "tests/registry/serve-hostile-realm.sh failed (docker-registry, openssl, python3)",
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_in_clear_a_plain_http_realm_of_an_https_registry_receives_nothing() {
    let s = hostile_realm();
    let world = World::new();
    world.write_config(&format!(
        "{}[defaults]\ncosign_keys = [\"{}\"]\ncosign_tlog = false\n\n[[rule]]\nname = \"app\"\nmatch = \"{}/**\"\nproofs = [\"cosign\"]\n",
        world.daemon_section(&format!(
            "registry_config_path = \"{}\"\nregistry_auth_file = \"{}\"\nregistry_timeout = \"3s\"\n",
            s.get("CERTS_D"),
            s.get("DOCKER_CONFIG_FILE"),
        )),
        s.get("COSIGN_KEY"),
        s.get("REGISTRY"),
    ));
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    let digest = format!("sha256:{}", "ab".repeat(32));
    let v = verify(
        &mut c,
        &format!("{}/team/app:v1", s.get("REGISTRY")),
        &digest,
    )
    .await;
    assert_eq!(
        (v.allowed, v.reason.as_str()),
        (false, "registry_auth_failed"),
        "{v:?}"
    );
    assert!(v.message.contains("plain HTTP"), "{}", v.message);
    // What the hostile realm received: nothing that carries the login.
    let captured = std::fs::read_to_string(s.get("CAPTURED")).unwrap_or_default();
    assert!(
        !captured.to_ascii_lowercase().contains("authorization"),
        "the node's credentials reached the realm: {captured}"
    );
}
