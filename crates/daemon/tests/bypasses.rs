//! Ways an image the policy meant to refuse was let in (the red team's list, issue 14),
//! each tried again as the attacker would, against a real notary-server signed with the
//! real notary CLI and the real pullguardd. Each test is named after its attack.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod harness;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use daemon::api::pullguard_client::PullguardClient;
use harness::{eventually, free_port, verify, Daemon, Fault, Notary, World};

type Client = PullguardClient<tonic::transport::Channel>;

const APP: &str = "registry.test/pullguard/app";

fn sha_of(text: &str) -> String {
    use sha2::Digest as _;
    format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(text.as_bytes()))
    )
}

/// `targets/releases` re-signs v1 to a new digest; `targets` still lists the old one.
/// Returns (old, new).
fn resign_v1_in_releases(notary: &Notary) -> (String, String) {
    let new = sha_of("v1-rebuilt");
    notary.cli(&format!(
        "addhash {APP} v1 2 --sha256 {} --roles targets/releases",
        new.trim_start_matches("sha256:")
    ));
    notary.cli(&format!("publish {APP}"));
    (notary.get("DIGEST_V1").to_owned(), new)
}

/// tests/faults/withholding-proxy.py in front of `notary`: 404 for targets/releases.json
/// while `switch` exists.
struct Proxy {
    _proxy: Fault,
    url: String,
}

impl Proxy {
    fn start(notary: &Notary, switch: &Path) -> Proxy {
        let port = free_port();
        let tls = notary.dir.path().join("tls");
        let _proxy = Fault::start(
            "withholding-proxy.py",
            &[
                &port.to_string(),
                notary.get("NOTARY_SERVER_PORT"),
                tls.join("notary-server.crt").to_str().unwrap(),
                tls.join("notary-server.key").to_str().unwrap(),
                notary.get("NOTARY_CA"),
                "/_trust/tuf/targets/releases.json",
                switch.to_str().unwrap(),
            ],
        );
        Proxy {
            _proxy,
            url: format!("https://127.0.0.1:{port}"),
        }
    }
}

/// A pullguardd with `servers` (trust server and defaults) and `rules`, and a client.
async fn daemon_with(servers: &str, rules: &str) -> (World, Daemon, Client) {
    let world = World::new();
    world.write_config(&format!("{}{servers}{rules}", world.daemon_section("")));
    let daemon = Daemon::start(&world);
    let client = daemon.client().await;
    (world, daemon, client)
}

const ALL: &str = "[[rule]]\nname = \"all\"\nmatch = \"**\"\n";

fn server_section(url: &str, ca: &str) -> String {
    format!(
        "[trust_server.notary]\nurl = \"{url}\"\nca_file = \"{ca}\"\ntimeout = \"2s\"\n\n[defaults]\ntrust_server = \"notary\"\ntofu = true\n"
    )
}

/// A trust server holding no keys answers 404 for targets/releases, which the snapshot
/// lists: first to a node that never saw the repository (no_trust_data, the role named),
/// then to one that trusted targets/releases before (rollback). Before the fix the old
/// digest that `targets` still lists for v1 was allowed.
#[tokio::test(flavor = "multi_thread")]
async fn withheld_delegation_cannot_bring_back_a_digest_targets_still_lists() {
    let notary = Notary::start();
    let (old, new) = resign_v1_in_releases(&notary);
    let switch = notary.dir.path().join("withhold");
    std::fs::write(&switch, "").unwrap();
    let proxy = Proxy::start(&notary, &switch);
    let (_world, _daemon, mut c) =
        daemon_with(&server_section(&proxy.url, notary.get("NOTARY_CA")), ALL).await;

    let v = verify(&mut c, &format!("{APP}:v1"), &old).await;
    assert_eq!(
        (v.allowed, v.reason.as_str()),
        (false, "no_trust_data"),
        "{v:?}"
    );
    assert!(v.message.contains("targets/releases"), "{}", v.message);
    let by_digest = verify(&mut c, &format!("{APP}@{old}"), "").await;
    assert!(!by_digest.allowed, "{by_digest:?}");

    // The honest answer: trusted, and targets/releases recorded in the node's state.
    std::fs::remove_file(&switch).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await; // cache_ttl = 1s
    let honest = verify(&mut c, &format!("{APP}:v1"), &new).await;
    assert!(honest.allowed, "{honest:?}");
    assert_eq!(honest.role, "targets/releases");

    // Withheld again, to a node that knows the role: a rollback.
    std::fs::write(&switch, "").unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let v = verify(&mut c, &format!("{APP}:v1"), &old).await;
    assert_eq!((v.allowed, v.reason.as_str()), (false, "rollback"), "{v:?}");
    assert!(v.message.contains("targets/releases"), "{}", v.message);
}

/// An honest server: v1 was re-signed in targets/releases, `targets` still lists the old
/// digest. A pull by the old digest (or the tag pinned to it) is refused as superseded.
#[tokio::test(flavor = "multi_thread")]
async fn superseded_digest_is_refused_when_pulled_by_digest() {
    let notary = Notary::start();
    let (old, new) = resign_v1_in_releases(&notary);
    let (_world, _daemon, mut c) = daemon_with(&World::server_section(&notary), ALL).await;
    let v = verify(&mut c, &format!("{APP}@{old}"), &old).await;
    assert_eq!(
        (v.allowed, v.reason.as_str()),
        (false, "digest_mismatch"),
        "{v:?}"
    );
    assert!(v.message.contains("superseded"), "{}", v.message);
    let v = verify(&mut c, &format!("{APP}:v1@{old}"), &old).await;
    assert_eq!(
        (v.allowed, v.reason.as_str()),
        (false, "digest_mismatch"),
        "{v:?}"
    );
    let current = verify(&mut c, &format!("{APP}@{new}"), &new).await;
    assert!(current.allowed, "{current:?}");
    assert_eq!(current.role, "targets/releases");
}

/// `app:dev-1@sha256:EVIL`: a lax rule for dev tags must not admit whatever digest is
/// written after the tag, since containerd pulls the digest.
#[tokio::test(flavor = "multi_thread")]
async fn tag_scoped_lax_rule_does_not_admit_a_reference_pinned_to_any_digest() {
    let notary = Notary::start();
    let (_world, _daemon, mut c) = daemon_with(&World::server_section(&notary), &format!("[[rule]]\nname = \"app\"\nmatch = \"{APP}**\"\n\n[[rule]]\nname = \"dev\"\nmatch = \"{APP}:dev-*\"\nrequire = \"any\"\n")).await;
    let evil = format!("sha256:{}", "e".repeat(64));
    let v = verify(&mut c, &format!("{APP}:dev-1@{evil}"), &evil).await;
    assert_eq!((v.allowed, v.rule.as_str()), (false, "app"), "{v:?}");
    // A plain tag pull of a dev tag is what the lax rule is for.
    let dev = verify(&mut c, &format!("{APP}:dev-1"), &evil).await;
    assert_eq!((dev.allowed, dev.rule.as_str()), (true, "dev"), "{dev:?}");
}

/// Spellings of one registry that containerd reaches as that registry (port 443 with
/// leading zeros, a trailing dot, upper case, Docker Hub aliases) get its rule, not a
/// lax catch-all; hosts outside ASCII are refused.
#[tokio::test(flavor = "multi_thread")]
async fn host_spellings_do_not_reach_a_laxer_rule() {
    let notary = Notary::start();
    let (_world, _daemon, mut c) = daemon_with(&World::server_section(&notary), "[[rule]]\nname = \"prod\"\nmatch = \"registry.test/**\"\n\n[[rule]]\nname = \"hub\"\nmatch = \"docker.io/**\"\nrequire = \"reject\"\n\n[[rule]]\nname = \"all\"\nmatch = \"**\"\nrequire = \"any\"\n").await;
    for spelling in [
        "registry.test:443/pullguard/app:v9",
        "registry.test:0443/pullguard/app:v9",
        "registry.test./pullguard/app:v9",
        "REGISTRY.test/pullguard/app:v9",
        "registry.test.:00443/pullguard/app:v9",
    ] {
        let v = verify(&mut c, spelling, "").await;
        assert_eq!(
            (v.allowed, v.rule.as_str(), v.reason.as_str()),
            (false, "prod", "unknown_tag"),
            "{spelling}: {v:?}"
        );
    }
    for hub in [
        "docker.io:443/library/alpine:3",
        "index.docker.io/library/alpine:3",
        "registry.hub.docker.com/alpine:3",
    ] {
        let v = verify(&mut c, hub, "").await;
        assert_eq!((v.allowed, v.rule.as_str()), (false, "hub"), "{hub}: {v:?}");
    }
    for bad in [
        "ｒｅｇｉｓｔｒｙ.test/pullguard/app:v2",
        "registry.tést/pullguard/app:v2",
        &format!("sha256:{}", "a".repeat(64)),
    ] {
        let v = verify(&mut c, bad, "").await;
        assert_eq!(
            (v.allowed, v.reason.as_str()),
            (false, "invalid_reference"),
            "{bad}: {v:?}"
        );
    }
}

/// A request the daemon cannot judge (a name over 4096 bytes, a sha512 digest) gets a
/// rejection verdict, recorded, never a transport error a client could take for "down".
#[tokio::test(flavor = "multi_thread")]
async fn refused_requests_get_a_recorded_verdict_not_a_transport_error() {
    let (world, _daemon, mut c) = daemon_with(
        "",
        "[[rule]]\nname = \"all\"\nmatch = \"**\"\nrequire = \"any\"\n",
    )
    .await;
    let long = format!("registry.test/{}:v1", "a".repeat(100_000));
    let v = verify(&mut c, &long, "").await;
    assert_eq!(
        (v.allowed, v.reason.as_str()),
        (false, "invalid_reference"),
        "{}",
        v.message
    );
    let sha512 = format!("sha512:{}", "b".repeat(128));
    let v = verify(&mut c, "registry.test/app:v1", &sha512).await;
    assert_eq!(
        (v.allowed, v.reason.as_str()),
        (false, "invalid_reference"),
        "{}",
        v.message
    );
    assert!(v.message.contains("sha256"), "{}", v.message);
    let v = verify(&mut c, &format!("registry.test/app@{sha512}"), "").await;
    assert_eq!(
        (v.allowed, v.reason.as_str()),
        (false, "invalid_reference"),
        "{}",
        v.message
    );
    assert_eq!(world.events_of("pull.rejected").len(), 3);
}

/// `ca_file` is a pin: a trust server whose certificate chains to a CA the system trusts
/// (here the test CA, made a system root with SSL_CERT_FILE) but not to the configured
/// CA is not reached. Before the fix the CA file only added to the system's roots.
#[tokio::test(flavor = "multi_thread")]
async fn ca_file_replaces_the_system_roots_for_its_trust_server() {
    let notary = Notary::start();
    let world = World::new();
    let other_ca = world.dir.path().join("other-ca.crt");
    let key = world.dir.path().join("other-ca.key");
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=another CA",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&other_ca)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    world.write_config(&format!(
        "{}{}[[rule]]\nname = \"all\"\nmatch = \"**\"\n",
        world.daemon_section(""),
        server_section(notary.get("NOTARY_URL"), other_ca.to_str().unwrap())
    ));
    let daemon = Daemon::start_with_env(&world, &[("SSL_CERT_FILE", notary.get("NOTARY_CA"))]);
    let mut c = daemon.client().await;
    let v = verify(&mut c, &format!("{APP}:v2"), notary.get("DIGEST_V2")).await;
    assert_eq!(
        (v.allowed, v.reason.as_str()),
        (false, "trust_server_unreachable"),
        "{v:?}"
    );
    // The same system roots with the right CA file: trusted.
    world.write_config(&format!(
        "{}{}[[rule]]\nname = \"all\"\nmatch = \"**\"\n",
        world.daemon_section(""),
        World::server_section(&notary)
    ));
    let ok = eventually(10, || {
        let mut c = c.clone();
        async move {
            let v = verify(&mut c, &format!("{APP}:v2"), "").await;
            v.allowed.then_some(v)
        }
    })
    .await;
    assert!(ok.is_some(), "allowed once the pinned CA is the server's");
}

/// Notary's canonical JSON signs U+2028 and U+2029 as raw UTF-8: a delegation holding a
/// target with such a name, signed by the real notary CLI, must verify (it was
/// `bad_signature`, which refused the whole repository).
#[tokio::test(flavor = "multi_thread")]
async fn a_delegation_signed_by_notary_with_a_line_separator_in_a_target_name_verifies() {
    let notary = Notary::start();
    notary.cli(&format!(
        "addhash {APP} $'odd\\u2028name\\u2029' 3 --sha256 {} --roles targets/releases",
        sha_of("odd").trim_start_matches("sha256:")
    ));
    notary.cli(&format!("publish {APP}"));
    let (_world, _daemon, mut c) = daemon_with(&World::server_section(&notary), ALL).await;
    let v = verify(&mut c, &format!("{APP}:v2"), notary.get("DIGEST_V2")).await;
    assert!(v.allowed, "{v:?}");
    assert_eq!(v.role, "targets/releases");
}

/// A pin in `keys_dir` spelled otherwise than the node names repositories (an upper-case
/// host here; `docker.io/alpine` for `docker.io/library/alpine` is the same case), under
/// a rule with `tofu = true`: before the fix it matched no repository, so the server's
/// own root was trusted on first use. The pin is now read in the node's spelling.
#[tokio::test(flavor = "multi_thread")]
async fn a_pin_spelled_otherwise_than_the_node_names_repositories_still_pins() {
    let notary = Notary::start();
    let world = World::new();
    std::fs::create_dir_all(&world.keys).unwrap();
    // A real certificate, but not the repository's root: nothing may verify under it.
    std::fs::copy(notary.get("NOTARY_CA"), world.keys.join("other.crt")).unwrap();
    let (_daemon, _) = app_not_pinned(
        &notary,
        &world,
        "[[anchor]]\nrepository = \"Registry.Test/pullguard/*\"\nroot_certs = [\"other.crt\"]\n",
    )
    .await;
}

/// A daemon on `world` with `index` as its keys directory's anchors and the catch-all
/// rule (`tofu = true`), asserting that APP is refused as `root_not_pinned`.
async fn app_not_pinned(notary: &Notary, world: &World, index: &str) -> (Daemon, Client) {
    std::fs::write(world.keys.join("index.toml"), index).unwrap();
    world.write_config(&format!(
        "{}{}{ALL}",
        world.daemon_section(""),
        World::server_section(notary)
    ));
    let daemon = Daemon::start(world);
    let mut c = daemon.client().await;
    let v = verify(&mut c, &format!("{APP}:v1"), notary.get("DIGEST_V1")).await;
    assert_eq!(
        (v.allowed, v.reason.as_str()),
        (false, "root_not_pinned"),
        "{}",
        v.message
    );
    (daemon, c)
}

/// A pin for the repository in `keys_dir` whose certificate does not load (here not a
/// certificate at all), under a rule with `tofu = true`: the anchor is skipped with a
/// warning, and before the fix the repository fell to the rule's trust on first use, so
/// the server's own root was trusted. So did an anchor that pins nothing on purpose.
#[tokio::test(flavor = "multi_thread")]
async fn a_broken_pin_in_keys_dir_does_not_fall_back_to_trust_on_first_use() {
    let notary = Notary::start();
    let world = World::new();
    std::fs::create_dir_all(&world.keys).unwrap();
    std::fs::write(world.keys.join("prod.crt"), "not a certificate\n").unwrap();
    let (_daemon, mut c) = app_not_pinned(
        &notary,
        &world,
        &format!("[[anchor]]\nrepository = \"{APP}\"\nroot_certs = [\"prod.crt\"]\n\n[[anchor]]\nrepository = \"registry.test/pullguard/empty*\"\n"),
    )
    .await;
    // The same repository under a name the empty anchor matches, published by the
    // same server: refused too.
    notary.cli("init registry.test/pullguard/empty-app");
    notary.cli(&format!(
        "addhash registry.test/pullguard/empty-app v1 2 --sha256 {}",
        "a".repeat(64)
    ));
    notary.cli("publish registry.test/pullguard/empty-app");
    let v = verify(
        &mut c,
        "registry.test/pullguard/empty-app:v1",
        &format!("sha256:{}", "a".repeat(64)),
    )
    .await;
    assert_eq!(
        (v.allowed, v.reason.as_str()),
        (false, "root_not_pinned"),
        "{}",
        v.message
    );
}

/// A name that does not parse is kept as sent in the verdict and its event: containerd
/// accepts any image name (`ctr import` of a stranger's archive), and a newline or an
/// escape in it forged lines of text logs and reached terminals through `pullguard
/// events`.
#[tokio::test(flavor = "multi_thread")]
async fn control_characters_in_an_unparsed_name_reach_no_answer_or_event() {
    let (world, _daemon, mut c) = daemon_with(
        "",
        "[[rule]]\nname = \"all\"\nmatch = \"**\"\nrequire = \"any\"\n",
    )
    .await;
    let name = "registry.test/app\n2026-12-07T00:00:00Z INFO forged\u{1b}[2J:v1";
    let v = verify(&mut c, name, "").await;
    assert_eq!(v.reason, "invalid_reference", "{}", v.message);
    for text in [&v.image, &v.message] {
        assert!(!text.chars().any(char::is_control), "{text:?}");
    }
    let events = world.events_of("pull.rejected");
    let image = events[0]["image"].as_str().unwrap();
    assert!(!image.chars().any(char::is_control), "{image:?}");
    assert!(image.starts_with("registry.test/app?2026"), "{image:?}");
}

/// Trust data that does not verify (here, targets/releases withheld by the hostile
/// proxy) was kept in memory all the same: a server could fill a node's memory with it,
/// a fetch's worth for every repository name it was asked about. Now it is dropped.
#[tokio::test(flavor = "multi_thread")]
async fn trust_data_that_does_not_verify_is_not_kept() {
    let notary = Notary::start();
    resign_v1_in_releases(&notary);
    let switch = notary.dir.path().join("withhold");
    std::fs::write(&switch, "").unwrap();
    let proxy = Proxy::start(&notary, &switch);
    let (_world, daemon, mut c) =
        daemon_with(&server_section(&proxy.url, notary.get("NOTARY_CA")), ALL).await;
    let v = verify(&mut c, &format!("{APP}:v1"), notary.get("DIGEST_V1")).await;
    assert_eq!(
        (v.allowed, v.reason.as_str()),
        (false, "no_trust_data"),
        "{v:?}"
    );
    assert_eq!(daemon.status().await.cached_repositories, 0);
}

/// A reload points the policy's trust server name at another URL (a new server, or
/// one that cannot be reached), under `on_unreachable = "cached"`: trust data fetched
/// from the old server was kept under the name and answered for the new one.
#[tokio::test(flavor = "multi_thread")]
async fn trust_data_from_a_server_the_policy_no_longer_names_does_not_answer() {
    let notary = Notary::start();
    let world = World::new();
    let config = |url: &str| {
        format!(
            "{}{}[[rule]]\nname = \"all\"\nmatch = \"**\"\non_unreachable = \"cached\"\n",
            world.daemon_section(""),
            server_section(url, notary.get("NOTARY_CA"))
        )
    };
    world.write_config(&config(notary.get("NOTARY_URL")));
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    let image = format!("{APP}:v1");
    let v = verify(&mut c, &image, notary.get("DIGEST_V1")).await;
    assert!(v.allowed, "{v:?}");
    world.write_config(&config(&format!("https://127.0.0.1:{}", free_port())));
    let moved = eventually(10, || {
        let mut c = c.clone();
        let image = image.clone();
        let digest = notary.get("DIGEST_V1").to_owned();
        async move {
            let v = verify(&mut c, &image, &digest).await;
            (v.policy_generation >= 2).then_some(v)
        }
    })
    .await
    .expect("the new policy never loaded");
    assert_eq!(
        (moved.allowed, moved.reason.as_str()),
        (false, "trust_server_unreachable"),
        "{}",
        moved.message
    );
}

/// Two anchors for one repository once both are read in the node's spelling (an old
/// `docker.io/alpine` with `tofu = true` beside a pinned `docker.io/library/alpine`):
/// one would silently win, and the trust-on-first-use one can. The load is refused.
#[test]
fn two_anchors_for_one_repository_refuse_the_load() {
    let world = World::new();
    std::fs::create_dir_all(&world.keys).unwrap();
    std::fs::write(
        world.keys.join("index.toml"),
        "[[anchor]]\nrepository = \"Registry.Test/pullguard/app\"\ntofu = true\n\n[[anchor]]\nrepository = \"registry.test/pullguard/app\"\nroot_key_ids = [\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"]\n",
    )
    .unwrap();
    world.write_config(&format!(
        "{}{ALL}require = \"any\"\n",
        world.daemon_section("")
    ));
    let Err(daemon::StartError::Config(problems)) = daemon::check_config(&world.config) else {
        panic!("loaded with two anchors for one repository");
    };
    assert!(
        problems
            .iter()
            .any(|p| p.contains("both name \"registry.test/pullguard/app\"")),
        "{problems:?}"
    );
}
