//! `pullguard sign` against a real notary-server and docker-registry (tests/sign/serve.sh),
//! checked with the real notary CLI and a real pullguardd.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;
#[path = "../../daemon/tests/harness/mod.rs"]
mod harness;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use harness::{eventually, free_port, kill, repo_root, serve, verify, Daemon, World};

/// Servers and the repository of tests/sign/serve.sh, plus a keys directory holding the
/// repository's targets, snapshot and targets/releases keys (imported from the notary
/// CLI's files, re-encrypted with `KEY_PASS`).
struct Signing {
    dir: tempfile::TempDir,
    env: HashMap<String, String>,
    keys: PathBuf,
    state: PathBuf,
}

const KEY_PASS: &str = "pullguard-sign-test";

impl Signing {
    fn start() -> Signing {
        let (dir, env) = serve(
            "tests/sign/serve.sh",
            "tests/sign/serve.sh failed: are the Debian packages notary, docker-registry and skopeo installed?",
        );
        let keys = dir.path().join("signer-keys");
        let state = dir.path().join("signer-state");
        let s = Signing {
            dir,
            env,
            keys,
            state,
        };
        for role in ["targets", "snapshot", "targets/releases"] {
            s.import(role);
        }
        s
    }

    fn get(&self, k: &str) -> &str {
        &self.env[k]
    }

    /// The notary CLI's private key file for `role`, and its passphrase (tests/notary/lib.sh).
    fn notary_key(&self, role: &str) -> (PathBuf, &'static str) {
        let private = Path::new(self.get("NOTARY_DIR")).join("trust/private");
        let file = std::fs::read_dir(private)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                std::fs::read_to_string(p)
                    .unwrap()
                    .lines()
                    .any(|l| l == format!("role: {role}"))
            })
            .unwrap_or_else(|| panic!("no notary key for {role}"));
        let pass = match role {
            "targets" => "pullguard-test-targets",
            "snapshot" => "pullguard-test-snapshot",
            "root" => "pullguard-test-root",
            _ => "pullguard-test-delegation",
        };
        (file, pass)
    }

    fn import(&self, role: &str) {
        self.import_as(role, KEY_PASS);
    }

    /// Imports the notary CLI's key for `role`, re-encrypted with `pass`.
    fn import_as(&self, role: &str, pass: &str) {
        let (file, notary_pass) = self.notary_key(role);
        let out = Command::new(env!("CARGO_BIN_EXE_pullguard"))
            .args(["keys", "--keys-dir"])
            .arg(&self.keys)
            .arg("import")
            .arg(file)
            .env("PULLGUARD_IMPORT_PASSPHRASE", notary_pass)
            .env("PULLGUARD_KEY_PASSPHRASE", pass)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `pullguard ARGS --json` against `server` with the signer state, the keys of
    /// `keys` and `env`; (exit code, JSON, all output).
    fn run(
        &self,
        args: &[&str],
        server: &str,
        keys: &Path,
        env: &[(&str, &str)],
    ) -> (i32, serde_json::Value, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_pullguard"))
            .args(args)
            .args(["--json", "--server", server, "--ca", self.get("NOTARY_CA")])
            .arg("--keys-dir")
            .arg(keys)
            .arg("--state-dir")
            .arg(&self.state)
            // No docker credentials from the machine running the tests.
            .env("DOCKER_CONFIG", self.dir.path())
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let json = serde_json::from_str(stdout.trim()).unwrap_or_default();
        let text = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), json, text)
    }

    /// [`Signing::run`] against this notary-server.
    fn pg(
        &self,
        args: &[&str],
        keys: &Path,
        env: &[(&str, &str)],
    ) -> (i32, serde_json::Value, String) {
        self.run(args, self.get("NOTARY_URL"), keys, env)
    }

    /// `pullguard sign REPO:TAG` (digest from the registry) with `server` as the trust
    /// server, the keys of `keys`, `pass` as the repository passphrase.
    fn sign_as(
        &self,
        keys: &Path,
        server: &str,
        tag: &str,
        pass: &str,
        extra: &[&str],
    ) -> (i32, serde_json::Value, String) {
        let reference = format!("{}:{tag}", self.get("REPO"));
        let mut args = vec![
            "sign",
            &reference,
            "--insecure-registry",
            self.get("REGISTRY"),
        ];
        args.extend_from_slice(extra);
        self.run(
            &args,
            server,
            keys,
            &[("PULLGUARD_REPOSITORY_PASSPHRASE", pass)],
        )
    }

    fn sign_via(
        &self,
        server: &str,
        tag: &str,
        pass: &str,
        extra: &[&str],
    ) -> (i32, serde_json::Value, String) {
        self.sign_as(&self.keys, server, tag, pass, extra)
    }

    /// `pullguard signer ARGS REPO` with the admin's keys.
    fn signer(&self, args: &[&str]) -> (i32, serde_json::Value, String) {
        let mut args = [&["signer"], args].concat();
        args.push(self.get("REPO"));
        self.pg(
            &args,
            &self.keys,
            &[("PULLGUARD_REPOSITORY_PASSPHRASE", KEY_PASS)],
        )
    }

    fn sign(&self, tag: &str) -> (i32, serde_json::Value, String) {
        self.sign_via(self.get("NOTARY_URL"), tag, KEY_PASS, &[])
    }

    /// The real notary CLI, as a publisher on another machine would run it.
    fn notary(&self, args: &str) -> String {
        let script = format!(
            ". {}/tests/notary/lib.sh; NOTARY_DIR={}; notary_cli {args}",
            repo_root().display(),
            self.get("NOTARY_DIR")
        );
        let out = Command::new("bash").arg("-c").arg(script).output().unwrap();
        assert!(
            out.status.success(),
            "notary {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every role file the server has now, as bytes: "the remote trust data".
    fn remote(&self) -> Vec<(String, Vec<u8>)> {
        [
            "root",
            "targets",
            "snapshot",
            "timestamp",
            "targets/releases",
        ]
        .iter()
        .map(|role| {
            let out = Command::new("curl")
                .args(["-s", "--cacert", self.get("NOTARY_CA")])
                .arg(format!(
                    "{}/v2/{}/_trust/tuf/{role}.json",
                    self.get("NOTARY_URL"),
                    self.get("REPO")
                ))
                .output()
                .unwrap();
            ((*role).to_owned(), out.stdout)
        })
        .collect()
    }

    fn daemon_world(&self) -> World {
        let world = World::new();
        world.write_config(&format!(
            "{}[trust_server.notary]\nurl = \"{}\"\nca_file = \"{}\"\ntimeout = \"5s\"\n\n[defaults]\ntrust_server = \"notary\"\ntofu = true\n\n[[rule]]\nname = \"team\"\nmatch = \"{}/team/**\"\n",
            world.daemon_section(""),
            self.get("NOTARY_URL"),
            self.get("NOTARY_CA"),
            self.get("REGISTRY")
        ));
        world
    }
}

impl Drop for Signing {
    fn drop(&mut self) {
        for pid in ["NOTARY_SERVER_PID", "NOTARY_SIGNER_PID", "REGISTRY_PID"] {
            kill(self.get(pid));
        }
    }
}

/// Waits (cached trust data lives 1 s in these daemons) until `image` is allowed.
async fn allowed_soon(
    c: &daemon::api::pullguard_client::PullguardClient<tonic::transport::Channel>,
    image: &str,
    digest: &str,
) -> bool {
    eventually(10, || {
        let mut c = c.clone();
        let (image, digest) = (image.to_owned(), digest.to_owned());
        async move {
            let v = verify(&mut c, &image, &digest).await;
            v.allowed.then_some(v)
        }
    })
    .await
    .is_some()
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_tags_reach_notary_lookup_and_pullguardd_and_the_notary_cli_can_go_on() {
    let s = Signing::start();
    let repo = s.get("REPO").to_owned();

    // Digest and size from the registry; signed in targets/releases (the repository
    // delegates to it), snapshot signed here (notary's default: the client holds it).
    let (code, json, text) = s.sign("v1");
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["digest"], s.get("DIGEST_V1"), "{json}");
    assert_eq!(json["role"], "targets/releases", "{json}");
    assert_eq!(json["snapshot"], "signed here", "{json}");

    // The real notary client reads it.
    let lookup = s.notary(&format!("lookup {repo} v1"));
    let hex = s.get("DIGEST_V1").trim_start_matches("sha256:");
    assert!(lookup.contains(hex), "{lookup}");

    // pullguardd allows the signed tag and refuses the unsigned one of the same repository.
    let world = s.daemon_world();
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    let v = verify(&mut c, &format!("{repo}:v1"), s.get("DIGEST_V1")).await;
    assert!(v.allowed, "{v:?}");
    assert_eq!(v.role, "targets/releases");
    let v = verify(
        &mut c,
        &format!("{repo}:unsigned"),
        s.get("DIGEST_UNSIGNED"),
    )
    .await;
    assert!(!v.allowed, "{v:?}");
    assert_eq!(v.reason, "unknown_tag");

    // The notary CLI publishes on top of what pullguard published, and pullguard again
    // on top of that.
    s.notary(&format!(
        "addhash {repo} from-notary 2 --sha256 {} --roles targets/releases",
        "ab".repeat(32)
    ));
    s.notary(&format!("publish {repo}"));
    let (code, json, text) = s.sign("v2");
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["digest"], s.get("DIGEST_V2"));
    let listed = s.notary(&format!("list {repo}"));
    for tag in ["v1", "v2", "from-notary"] {
        assert!(
            listed.contains(tag),
            "{tag} missing from notary list:\n{listed}"
        );
    }
    // Once the daemon's cached copy is older than cache_ttl (1 s here).
    assert!(
        allowed_soon(&c, &format!("{repo}:v2"), s.get("DIGEST_V2")).await,
        "v2 never allowed"
    );

    // --role targets: signed with the targets key instead.
    let (code, json, text) = s.sign_via(
        s.get("NOTARY_URL"),
        "unsigned",
        KEY_PASS,
        &["--role", "targets"],
    );
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["role"], "targets");
    let lookup = s.notary(&format!("lookup {repo} unsigned"));
    assert!(
        lookup.contains(s.get("DIGEST_UNSIGNED").trim_start_matches("sha256:")),
        "{lookup}"
    );
}

#[test]
fn failures_are_clear_and_leave_the_remote_trust_data_unchanged() {
    let s = Signing::start();
    let before = s.remote();

    // Wrong passphrase.
    let (code, json, text) = s.sign_via(s.get("NOTARY_URL"), "v1", "not-the-passphrase", &[]);
    assert_eq!(
        (code, json["error"].as_str()),
        (2, Some("wrong_passphrase")),
        "{text}"
    );
    assert!(text.contains("PULLGUARD_REPOSITORY_PASSPHRASE"), "{text}");
    assert_eq!(s.remote(), before);

    // Missing key: an empty keys directory.
    let away = s.dir.path().join("keys-away");
    std::fs::rename(&s.keys, &away).unwrap();
    let (code, json, text) = s.sign("v1");
    assert_eq!(
        (code, json["error"].as_str()),
        (2, Some("missing_key")),
        "{text}"
    );
    std::fs::remove_dir_all(&s.keys).ok();
    std::fs::rename(&away, &s.keys).unwrap();
    assert!(text.contains("pullguard keys import"), "{text}");
    assert_eq!(s.remote(), before);

    // The server refuses: without the snapshot key here, only targets/releases is sent,
    // and this server does not hold the repository's snapshot key either.
    std::fs::remove_dir_all(&s.keys).unwrap();
    s.import("targets/releases");
    let (code, json, text) = s.sign("v1");
    assert_eq!(
        (code, json["error"].as_str()),
        (1, Some("upload_refused")),
        "{text}"
    );
    assert!(
        text.contains("the remote trust data is unchanged"),
        "{text}"
    );
    assert_eq!(s.remote(), before);
}

#[test]
fn a_concurrent_publish_is_detected_and_nothing_is_half_published() {
    let s = Signing::start();
    let repo = s.get("REPO").to_owned();
    // A proxy that holds our upload until someone else has published.
    let release = s.dir.path().join("release");
    let port = free_port();
    let tls = Path::new(s.get("NOTARY_DIR")).join("tls");
    let upstream = s.get("NOTARY_URL").rsplit(':').next().unwrap().to_owned();
    let mut proxy = Command::new("python3")
        .arg(repo_root().join("tests/sign/hold-proxy.py"))
        .arg(port.to_string())
        .arg(&upstream)
        .arg(tls.join("notary-server.crt"))
        .arg(tls.join("notary-server.key"))
        .arg(tls.join("ca.crt"))
        .arg(&release)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead as _;
        let mut line = String::new();
        std::io::BufReader::new(proxy.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
    }
    let via = format!("https://127.0.0.1:{port}");
    let held = s.dir.path().join("release.held");
    let mut after_other = Vec::new();
    let (code, json, text) = std::thread::scope(|scope| {
        let signer = scope.spawn(|| s.sign_via(&via, "v1", KEY_PASS, &[]));
        // Once our upload is held at the proxy, another publisher goes first.
        let mut waited = 0;
        while !held.exists() {
            assert!(waited < 600, "pullguard sign never uploaded");
            std::thread::sleep(std::time::Duration::from_millis(50));
            waited += 1;
        }
        s.notary(&format!(
            "addhash {repo} by-someone-else 2 --sha256 {} --roles targets/releases",
            "cd".repeat(32)
        ));
        s.notary(&format!("publish {repo}"));
        after_other = s.remote();
        std::fs::write(&release, "").unwrap();
        signer.join().unwrap()
    });
    let _ = proxy.kill();
    let _ = proxy.wait();
    assert_eq!(
        (code, json["error"].as_str()),
        (1, Some("concurrent_publish")),
        "{text}"
    );
    assert!(text.contains("run it again"), "{text}");
    assert_eq!(
        s.remote(),
        after_other,
        "the other publish stands, ours is not in"
    );

    // Run again: it goes through, on top of the other publish.
    let (code, _, text) = s.sign("v1");
    assert_eq!(code, 0, "{text}");
    let listed = s.notary(&format!("list {repo}"));
    assert!(
        listed.contains("v1") && listed.contains("by-someone-else"),
        "{listed}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_signer_added_with_signer_add_signs_with_their_own_key() {
    let s = Signing::start();
    let repo = s.get("REPO").to_owned();
    // As repositories `docker trust` creates: the server signs the snapshot.
    s.notary(&format!("key rotate {repo} snapshot -r"));

    // Bob makes his own key, in his own keys directory.
    let bob_keys = s.dir.path().join("bob-keys");
    let out = Command::new(env!("CARGO_BIN_EXE_pullguard"))
        .args(["keys", "--keys-dir"])
        .arg(&bob_keys)
        .args(["generate", "--role", "targets/releases", "--json"])
        .env("PULLGUARD_KEY_PASSPHRASE", "bob-passphrase")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bob_pub = s.dir.path().join("bob.pub");
    std::fs::write(&bob_pub, generated["public_pem"].as_str().unwrap()).unwrap();

    // Before he is added, his signature is refused here, not by the server.
    let (code, json, text) = s.sign_as(&bob_keys, s.get("NOTARY_URL"), "v2", "bob-passphrase", &[]);
    assert_eq!(
        (code, json["error"].as_str()),
        (2, Some("missing_key")),
        "{text}"
    );

    // The repository's admin adds him.
    let (code, json, text) = s.signer(&["add", "bob", "--key", bob_pub.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["key_id"], generated["key_id"], "{json}");
    let (code, json, text) = s.signer(&["list"]);
    assert_eq!(code, 0, "{text}");
    let names: Vec<&str> = json["signers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"bob") && names.contains(&"releases"),
        "{json}"
    );

    // Bob signs v2 with his own key; the server signs the snapshot.
    let (code, json, text) = s.sign_as(&bob_keys, s.get("NOTARY_URL"), "v2", "bob-passphrase", &[]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["snapshot"], "signed by the server", "{json}");
    let lookup = s.notary(&format!("lookup {repo} v2"));
    assert!(
        lookup.contains(s.get("DIGEST_V2").trim_start_matches("sha256:")),
        "{lookup}"
    );
    let world = s.daemon_world();
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    let v = verify(&mut c, &format!("{repo}:v2"), s.get("DIGEST_V2")).await;
    assert!(v.allowed, "{v:?}");
    assert_eq!(v.role, "targets/releases");

    // Removed, he can no longer sign. targets/releases, which only his key had signed,
    // is signed again with the remaining signer's key in the same publish: nodes refuse a
    // repository whose targets/releases does not verify, so it must stay valid.
    let (code, _, text) = s.signer(&["remove", "bob"]);
    assert_eq!(code, 0, "{text}");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // cache_ttl
    let v = verify(&mut c, &format!("{repo}:v2"), s.get("DIGEST_V2")).await;
    assert!(v.allowed, "still valid after the signer left: {v:?}");
    let (code, json, text) = s.sign_as(&bob_keys, s.get("NOTARY_URL"), "v1", "bob-passphrase", &[]);
    assert_eq!(
        (code, json["error"].as_str()),
        (2, Some("missing_key")),
        "{text}"
    );
    let (code, json, _) = s.signer(&["remove", "bob"]);
    assert_eq!((code, json["error"].as_str()), (1, Some("unknown_signer")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_root_rotation_is_followed_by_nodes_and_the_notary_cli_that_trusted_the_old_root() {
    let s = Signing::start();
    let repo = s.get("REPO").to_owned();
    let (code, _, text) = s.sign("v1");
    assert_eq!(code, 0, "{text}");
    // A node trusts the current root (trust on first use).
    let world = s.daemon_world();
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    assert!(
        verify(&mut c, &format!("{repo}:v1"), s.get("DIGEST_V1"))
            .await
            .allowed
    );

    // Without the root key: refused, and nothing changes.
    let before = s.remote();
    let rotate = |env: &[(&str, &str)]| s.pg(&["key", "rotate", &repo, "root"], &s.keys, env);
    let (code, json, text) = rotate(&[("PULLGUARD_ROOT_PASSPHRASE", "new-root-pass")]);
    assert_eq!(
        (code, json["error"].as_str()),
        (2, Some("missing_key")),
        "{text}"
    );
    assert_eq!(s.remote(), before);

    // With the old root key imported: rotated, cross-signed.
    s.import_as("root", "old-root-pass");
    // The old key's passphrase, then the new key's (one variable serves both here).
    let (code, json, text) = rotate(&[
        ("PULLGUARD_ROOT_PASSPHRASE", "old-root-pass"),
        ("PULLGUARD_REPOSITORY_PASSPHRASE", KEY_PASS),
    ]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["root_version"], 2, "{json}");
    assert_ne!(json["old_key_id"], json["new_key_id"]);

    // The notary CLI, which trusted the old root, follows (and its lookup still works).
    let lookup = s.notary(&format!("lookup {repo} v1"));
    assert!(
        lookup.contains(s.get("DIGEST_V1").trim_start_matches("sha256:")),
        "{lookup}"
    );
    // The node follows: a tag signed after the rotation is allowed (its fetch brings the
    // new root, which must verify against the old one the node trusted).
    let (code, _, text) = s.sign("v2");
    assert_eq!(code, 0, "{text}");
    assert!(
        allowed_soon(&c, &format!("{repo}:v2"), s.get("DIGEST_V2")).await,
        "the node did not follow the rotation"
    );
    let state = std::fs::read_dir(world.state.join("repos"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .find(|t| t.contains(&repo))
        .expect("the node's state for the repository");
    assert!(state.contains("\"root\":2"), "{state}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_repository_is_initialised_by_its_first_tag_and_its_keys_rotate_and_back_up() {
    let s = Signing::start();
    let fresh = s.get("FRESH").to_owned();
    let keys = s.dir.path().join("owner-keys");
    let env = [
        ("PULLGUARD_ROOT_PASSPHRASE", "owner-root"),
        ("PULLGUARD_REPOSITORY_PASSPHRASE", "owner-repo"),
    ];
    let reference = format!("{fresh}:v1");

    // First signature: root and targets keys made here, the server holds timestamp and
    // snapshot keys.
    let (code, json, text) = s.pg(
        &["sign", &reference, "--insecure-registry", s.get("REGISTRY")],
        &keys,
        &env,
    );
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["initialised"], true, "{json}");
    assert_eq!(json["digest"], s.get("DIGEST_FRESH"), "{json}");
    assert_eq!(json["snapshot"], "signed by the server", "{json}");
    let lookup = s.notary(&format!("lookup {fresh} v1"));
    assert!(
        lookup.contains(s.get("DIGEST_FRESH").trim_start_matches("sha256:")),
        "{lookup}"
    );
    let world = s.daemon_world();
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    assert!(
        verify(&mut c, &reference, s.get("DIGEST_FRESH"))
            .await
            .allowed
    );

    // Back up the root key, lose it: rotation is refused; restore it: rotation works.
    let backup = s.dir.path().join("fresh-root.backup");
    let (code, json, text) = s.pg(
        &["key", "backup", &fresh, "--to", backup.to_str().unwrap()],
        &keys,
        &env,
    );
    assert_eq!(code, 0, "{text}");
    let root_id = json["key_id"].as_str().unwrap().to_owned();
    let (code, _, text) = s.pg(
        &["key", "backup", &fresh, "--to", backup.to_str().unwrap()],
        &keys,
        &env,
    );
    assert_eq!(code, 2, "an existing backup is never overwritten: {text}");
    let root_file = std::fs::read_dir(keys.join("private"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| std::fs::read_to_string(p).unwrap().contains("role: root"))
        .expect("the root key file");
    std::fs::remove_file(&root_file).unwrap();
    let (code, json, text) = s.pg(&["key", "rotate", &fresh, "targets"], &keys, &env);
    assert_eq!(
        (code, json["error"].as_str()),
        (2, Some("missing_key")),
        "{text}"
    );
    let restore = |pass: &str| {
        Command::new(env!("CARGO_BIN_EXE_pullguard"))
            .args(["key", "restore"])
            .arg(&backup)
            .arg("--keys-dir")
            .arg(&keys)
            .env("PULLGUARD_ROOT_PASSPHRASE", pass)
            .output()
            .unwrap()
    };
    assert_eq!(
        restore("not-it").status.code(),
        Some(2),
        "a wrong passphrase is refused"
    );
    let out = restore("owner-root");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Targets key rotated (root version 2, signed by the root key), then the server's
    // snapshot key; signing goes on with the new targets key.
    let (code, json, text) = s.pg(&["key", "rotate", &fresh, "targets"], &keys, &env);
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["root_version"], 2, "{json}");
    let (code, json, text) = s.pg(&["key", "rotate", &fresh, "snapshot"], &keys, &env);
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["root_version"], 3, "{json}");
    assert!(
        json["new_key_file"].is_null(),
        "the server holds it: {json}"
    );
    let v2 = format!("{fresh}:v2");
    let digest_v2 = format!("sha256:{}", "ef".repeat(32));
    let (code, json, text) = s.pg(
        &["sign", &v2, "--digest", &digest_v2, "--size", "7"],
        &keys,
        &env,
    );
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["version"], 3, "{json}");
    // Then the root itself, cross-signed.
    let (code, json, text) = s.pg(&["key", "rotate", &fresh, "root"], &keys, &env);
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["old_key_ids"][0], root_id.as_str(), "{json}");
    assert_eq!(json["root_version"], 4, "{json}");

    // The notary CLI and the node both follow all of it.
    let listed = s.notary(&format!("list {fresh}"));
    assert!(listed.contains("v1") && listed.contains("v2"), "{listed}");
    assert!(
        allowed_soon(&c, &v2, &digest_v2).await,
        "the node did not follow the rotations"
    );
}

#[test]
fn publisher_mistakes_are_refused_before_anything_is_sent() {
    let s = Signing::start();
    let repo = s.get("REPO").to_owned();
    let before = s.remote();
    // A delegation limited to prod/ tags, whose key we hold (the releases key).
    let cert = s.dir.path().join("releases.crt");
    s.notary(&format!(
        "delegation add {repo} targets/qa {} --paths prod/",
        cert.display()
    ));
    s.notary(&format!("publish {repo}"));
    let before_qa = s.remote();
    assert_ne!(before_qa, before);
    let (code, json, text) = s.sign_via(
        s.get("NOTARY_URL"),
        "v1",
        KEY_PASS,
        &["--role", "targets/qa"],
    );
    assert_eq!(
        (code, json["error"].as_str()),
        (1, Some("outside_delegated_paths")),
        "{text}"
    );
    let (code, json, text) = s.sign_via(
        s.get("NOTARY_URL"),
        "v1",
        KEY_PASS,
        &["--role", "targets/nobody"],
    );
    assert_eq!(
        (code, json["error"].as_str()),
        (1, Some("unknown_role")),
        "{text}"
    );

    // Signer names and key files that cannot be right.
    let (code, json, text) = s.signer(&["add", "releases", "--key", cert.to_str().unwrap()]);
    assert_eq!(
        (code, json["error"].as_str()),
        (2, Some("invalid_name")),
        "{text}"
    );
    let not_a_key = s.dir.path().join("env");
    let (code, json, text) = s.signer(&["add", "bob", "--key", not_a_key.to_str().unwrap()]);
    assert_eq!(
        (code, json["error"].as_str()),
        (2, Some("invalid_key")),
        "{text}"
    );
    // The only key of targets/releases cannot be removed with its signer.
    let (code, _, text) = s.signer(&["add", "solo", "--key", cert.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    let with_solo = s.remote();
    let (code, json, text) = s.signer(&["remove", "solo"]);
    assert_eq!(
        (code, json["error"].as_str()),
        (1, Some("last_signer")),
        "{text}"
    );
    assert_eq!(s.remote(), with_solo);
}
