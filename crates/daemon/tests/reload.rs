//! Policy hot reload, observed through verdicts (no trust server needed: the rules use
//! require = "any" and "reject").

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod harness;

use std::path::Path;

use harness::{eventually, free_port, verify, Daemon, World};

const IMAGE: &str = "registry.test/team/app:v1";

fn policy(world: &World, require: &str) -> String {
    format!("{}[[rule]]\nname = \"team-{require}\"\nmatch = \"registry.test/team/**\"\nrequire = \"{require}\"\n", world.daemon_section(""))
}

/// Waits until the verdict for IMAGE says `allowed` under `rule` and policy generation
/// `generation`, and stays on it.
async fn until(daemon: &Daemon, allowed: bool, rule: &str, generation: u64) {
    let c = daemon.client().await;
    let seen = eventually(10, || {
        let mut c = c.clone();
        async move {
            let v = verify(&mut c, IMAGE, "").await;
            (v.policy_generation >= generation).then_some(v)
        }
    })
    .await
    .unwrap_or_else(|| panic!("policy generation {generation} never arrived"));
    assert_eq!(
        (seen.allowed, seen.rule.as_str(), seen.policy_generation),
        (allowed, rule, generation),
        "{seen:?}"
    );
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-editor");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn edits_renames_invalid_edits_deletion_and_sighup() {
    let world = World::new();
    world.write_config(&policy(&world, "any"));
    let daemon = Daemon::start(&world);
    until(&daemon, true, "team-any", 1).await;

    // Edit in place.
    std::fs::write(&world.config, policy(&world, "reject")).unwrap();
    until(&daemon, false, "team-reject", 2).await;

    // An editor's atomic rename.
    write_atomically(&world.config, &policy(&world, "any"));
    until(&daemon, true, "team-any", 3).await;
    // Both seen by the directory's watch as whole files (a write closed, a rename in),
    // not left to the one-second check.
    let reloaded = world.events_of("policy.reloaded");
    assert!(
        reloaded.len() >= 2
            && reloaded[reloaded.len() - 2..]
                .iter()
                .all(|e| e["message"].as_str().unwrap().ends_with("(file written)")),
        "{reloaded:?}"
    );

    // An invalid edit: the last good policy stays, and the event says where.
    std::fs::write(
        &world.config,
        format!("{}mode = \"sometimes\"\n", policy(&world, "reject")),
    )
    .unwrap();
    let invalid = eventually(10, || async {
        world.events_of("policy.invalid").into_iter().next()
    })
    .await
    .expect("policy.invalid event");
    let msg = invalid["message"].as_str().unwrap();
    // The bad line is the one appended after the valid policy.
    let bad_line = policy(&world, "reject").lines().count() + 1;
    assert!(
        msg.contains(&format!("pullguard.toml:{bad_line}:8:")),
        "{msg}"
    );
    assert!(msg.contains("keeping policy generation 3"), "{msg}");
    until(&daemon, true, "team-any", 3).await;

    // Deleted: kept; recreated: loaded.
    std::fs::remove_file(&world.config).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    until(&daemon, true, "team-any", 3).await;
    assert!(world
        .events_of("policy.invalid")
        .iter()
        .any(|e| e["message"].as_str().unwrap().contains("missing")));
    std::fs::write(&world.config, policy(&world, "reject")).unwrap();
    until(&daemon, false, "team-reject", 4).await;

    // SIGHUP reloads even an unchanged file.
    daemon.hup();
    until(&daemon, false, "team-reject", 5).await;
    let reloaded = world.events_of("policy.reloaded");
    assert_eq!(reloaded.len(), 4, "{reloaded:?}");
    assert!(reloaded
        .iter()
        .all(|e| e["policy_generation"].as_u64().unwrap() >= 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn configmap_symlink_swap() {
    // Kubernetes mounts a ConfigMap as DIR/pullguard.toml -> ..data/pullguard.toml,
    // ..data -> ..<timestamp>/, and swaps ..data with a rename.
    let world = World::new();
    let etc = world.config.parent().unwrap().to_path_buf();
    let publish = |name: &str, text: &str| {
        let version = etc.join(name);
        std::fs::create_dir_all(&version).unwrap();
        std::fs::write(version.join("pullguard.toml"), text).unwrap();
        let tmp = etc.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(name, &tmp).unwrap();
        std::fs::rename(&tmp, etc.join("..data")).unwrap();
    };
    publish("..2026_01", &policy(&world, "any"));
    std::os::unix::fs::symlink("..data/pullguard.toml", &world.config).unwrap();
    let daemon = Daemon::start(&world);
    until(&daemon, true, "team-any", 1).await;
    let version = |text: &str| {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(text.as_bytes()))
    };
    let status = || daemon.status();
    // Which ConfigMap version is in force: the bytes' digest and the kubelet's directory.
    assert_eq!(
        status().await.policy_version,
        format!(
            "sha256:{} (ConfigMap volume data ..2026_01)",
            version(&policy(&world, "any"))
        )
    );
    publish("..2026_02", &policy(&world, "reject"));
    until(&daemon, false, "team-reject", 2).await;
    let now = format!(
        "sha256:{} (ConfigMap volume data ..2026_02)",
        version(&policy(&world, "reject"))
    );
    assert_eq!(status().await.policy_version, now);
    let reloaded = world.events_of("policy.reloaded");
    assert!(
        reloaded
            .last()
            .is_some_and(|e| e["message"].as_str().unwrap().contains(&now)),
        "{reloaded:?}"
    );
    // A broken version: the kubelet's swap lands, the policy in force stays, and so does
    // the version status reports.
    publish(
        "..2026_03",
        "[[rule]]\nname = \"x\"\nmode = \"sometimes\"\n",
    );
    eventually(10, || async {
        world.events_of("policy.invalid").into_iter().next()
    })
    .await
    .expect("policy.invalid for the broken version");
    assert_eq!(status().await.policy_version, now);
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_file_and_directory_keep_the_last_good_policy() {
    let world = World::new();
    world.write_config(&policy(&world, "reject"));
    let daemon = Daemon::start(&world);
    until(&daemon, false, "team-reject", 1).await;
    let invalid_with = |needle: &'static str| {
        let world = &world;
        eventually(10, move || async move {
            world
                .events_of("policy.invalid")
                .into_iter()
                .find(|e| e["message"].as_str().unwrap().contains(needle))
        })
    };

    // Truncated to nothing (a deployment tool caught half way): refused, not "no rules".
    std::fs::write(&world.config, "").unwrap();
    let ev = invalid_with("is empty")
        .await
        .expect("policy.invalid for the empty file");
    assert!(
        ev["message"]
            .as_str()
            .unwrap()
            .contains("keeping policy generation 1"),
        "{ev}"
    );
    until(&daemon, false, "team-reject", 1).await;

    // Comments only: no rules, also refused.
    std::fs::write(
        &world.config,
        format!("{}# rules to come\n", world.daemon_section("")),
    )
    .unwrap();
    invalid_with("no [[rule]]")
        .await
        .expect("policy.invalid for a file without rules");
    until(&daemon, false, "team-reject", 1).await;

    // Replaced by a directory of the same name.
    std::fs::remove_file(&world.config).unwrap();
    std::fs::create_dir(&world.config).unwrap();
    invalid_with("is now a directory")
        .await
        .expect("policy.invalid for a directory");
    until(&daemon, false, "team-reject", 1).await;

    // Back to a file: loaded.
    std::fs::remove_dir(&world.config).unwrap();
    std::fs::write(&world.config, policy(&world, "any")).unwrap();
    until(&daemon, true, "team-any", 2).await;
}

#[test]
fn the_daemon_refuses_to_start_on_an_empty_policy() {
    let world = World::new();
    world.write_config("");
    let err = Daemon::refused(&world);
    assert!(err.contains("is empty"), "{err}");
}

/// policy_file_comes_back: a policy file deleted and put back more than a second later
/// with the same bytes was never read again ("the policy file is missing" for ever).
/// Each way it comes back loads it: created again, renamed into place, a dangling
/// symlink pointed at a file again.
#[tokio::test(flavor = "multi_thread")]
async fn a_policy_file_that_comes_back_is_read_whichever_way_it_comes_back() {
    let world = World::new();
    let text = policy(&world, "reject");
    world.write_config(&text);
    let daemon = Daemon::start(&world);
    until(&daemon, false, "team-reject", 1).await;
    let missing = |n: usize| {
        let world = &world;
        eventually(10, move || async move {
            let seen = world
                .events_of("policy.invalid")
                .iter()
                .filter(|e| e["message"].as_str().unwrap().contains("missing"))
                .count();
            (seen >= n).then_some(())
        })
    };
    let target = world.config.with_extension("real");
    for (n, way) in ["created again", "renamed into place", "symlink re-pointed"]
        .into_iter()
        .enumerate()
    {
        // Gone (the symlink case: left dangling), for longer than the one-second check.
        std::fs::remove_file(&world.config).unwrap();
        if way == "symlink re-pointed" {
            std::os::unix::fs::symlink(world.config.with_extension("nowhere"), &world.config)
                .unwrap();
        }
        missing(n + 1)
            .await
            .unwrap_or_else(|| panic!("{way}: no policy.invalid 'missing'"));
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        match way {
            "created again" => std::fs::write(&world.config, &text).unwrap(),
            "renamed into place" => write_atomically(&world.config, &text),
            _ => {
                std::fs::write(&target, &text).unwrap();
                std::fs::remove_file(&world.config).unwrap();
                std::os::unix::fs::symlink(&target, &world.config).unwrap();
            }
        }
        let generation = 2 + n as u64;
        until(&daemon, false, "team-reject", generation).await;
        let back = world.events_of("policy.reloaded");
        assert!(
            back.iter().any(|e| e["policy_generation"] == generation
                && e["message"].as_str().unwrap().contains("the file is back")),
            "{way}: {back:?}"
        );
    }
}

/// What an operator sees of a refused edit: `status` says when it was refused and the
/// metrics carry a gauge to alert on, until an edit loads again.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_reload_shows_its_time_in_status_and_a_gauge_in_metrics() {
    let world = World::new();
    let port = free_port();
    let with_metrics = |require: &str| {
        policy(&world, require).replacen(
            "[daemon]\n",
            &format!("[daemon]\nmetrics = \"{port}\"\n"),
            1,
        )
    };
    world.write_config(&with_metrics("any"));
    let daemon = Daemon::start(&world);
    until(&daemon, true, "team-any", 1).await;
    let gauge = || {
        let out = std::process::Command::new("curl")
            .args(["-fsS", &format!("http://127.0.0.1:{port}/metrics")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| {
                l.strip_prefix("pullguard_policy_last_reload_failed ")
                    .map(str::to_owned)
            })
            .unwrap_or_default()
    };
    assert_eq!(gauge(), "0");
    std::fs::write(
        &world.config,
        format!("{}mode = \"sometimes\"\n", with_metrics("any")),
    )
    .unwrap();
    eventually(10, || async {
        world.events_of("policy.invalid").into_iter().next()
    })
    .await
    .expect("policy.invalid event");
    assert_eq!(gauge(), "1");
    let s = daemon.status().await;
    assert!(s.last_reload.starts_with("refused at 20"), "{s:?}");
    assert!(
        s.last_reload.contains("keeping policy generation 1"),
        "{s:?}"
    );
    std::fs::write(&world.config, with_metrics("reject")).unwrap();
    until(&daemon, false, "team-reject", 2).await;
    assert_eq!(gauge(), "0");
    let s = daemon.status().await;
    assert!(
        s.last_reload.starts_with("ok at 20") && s.last_reload.contains("generation 2"),
        "{s:?}"
    );
}

/// A P-256 public key in PEM at `path`, as `cosign generate-key-pair` writes one.
fn public_key(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let private = path.with_extension("key");
    let ok = std::process::Command::new("openssl")
        .args([
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
        ])
        .arg(&private)
        .status()
        .unwrap()
        .success()
        && std::process::Command::new("openssl")
            .args(["ec", "-pubout", "-in"])
            .arg(&private)
            .arg("-out")
            .arg(path)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success();
    assert!(ok, "openssl could not make a key");
}

/// A policy naming a key file that is not there (a Kubernetes Secret lands after the
/// ConfigMap that names it; a revoked key deleted) is loaded, with the rule naming it
/// refusing everything and the event saying so; the key's arrival, even outside
/// keys_dir, is a reload of its own; and a change in keys_dir alone (a key replaced, the
/// policy file untouched) is loaded. Before: the first reload was refused, which kept the
/// generation that still trusted a deleted key; before that, a keys_dir change alone was
/// never seen.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_that_is_gone_refuses_its_rule_and_its_return_is_loaded() {
    let world = World::new();
    let elsewhere = world.dir.path().join("secret/new.pub");
    let signed = format!("registry.test/signed/app@sha256:{}", "a".repeat(64));
    public_key(&world.keys.join("old.pub"));
    let with_key = |require: &str, key: &Path| {
        format!(
            "{}[[rule]]\nname = \"signed\"\nmatch = \"registry.test/signed/**\"\nproofs = [\"cosign\"]\ncosign_tlog = false\ncosign_keys = [\"{}\"]\non_unreachable = \"deny\"\n",
            policy(&world, require),
            key.display()
        )
    };
    world.write_config(&with_key("any", &world.keys.join("old.pub")));
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    until(&daemon, true, "team-any", 1).await;
    let gone = |v: &daemon::api::VerifyResponse, file: &str| {
        !v.allowed && v.reason == "rejected_by_policy" && v.message.contains(file)
    };
    // The revoked key deleted, the policy untouched: the rule refuses everything.
    std::fs::remove_file(world.keys.join("old.pub")).unwrap();
    let v = eventually(10, || {
        let (mut c, signed) = (c.clone(), signed.clone());
        async move {
            let v = verify(&mut c, &signed, "").await;
            gone(&v, "old.pub").then_some(v)
        }
    })
    .await;
    assert!(v.is_some(), "the rule still trusts the deleted key");
    // The policy names a key that is not there yet: loaded, said, the rule refusing.
    world.write_config(&with_key("reject", &elsewhere));
    until(&daemon, false, "team-reject", 3).await;
    let v = verify(&mut c, &signed, "").await;
    assert!(gone(&v, "new.pub"), "{v:?}");
    let reloaded = world.events_of("policy.reloaded");
    assert!(
        reloaded.iter().any(|e| {
            let m = e["message"].as_str().unwrap();
            m.contains("count no signature of a kind while a file they trust is gone")
                && m.contains("new.pub")
        }),
        "{reloaded:?}"
    );
    assert!(world.events_of("policy.invalid").is_empty());
    // The key arrives outside keys_dir: loaded, and the rule asks the registry again.
    public_key(&elsewhere);
    until(&daemon, false, "team-reject", 4).await;
    let v = verify(&mut c, &signed, "").await;
    assert_eq!(v.reason, "registry_unreachable", "{v:?}");
    // keys_dir changes alone: a key added there.
    public_key(&world.keys.join("other.pub"));
    until(&daemon, false, "team-reject", 5).await;
    let reloaded = world.events_of("policy.reloaded");
    assert!(
        reloaded
            .iter()
            .any(|e| e["message"].as_str().unwrap().contains("keys_dir changed")),
        "{reloaded:?}"
    );
}

/// A policy written in place in two steps with the file kept open between them (a tool
/// writing through a buffer, an editor writing over the file): the first step alone is a
/// policy that parses, and the one-second check loaded it as a generation of its own
/// (a laxer policy, or one whose missing rules make the sweep remove images). Now a new
/// text loads at once only when the file is closed after writing or renamed into place,
/// and otherwise once it has settled.
#[tokio::test(flavor = "multi_thread")]
async fn a_policy_file_still_being_written_is_not_loaded_half_way() {
    use std::io::Write as _;
    let world = World::new();
    world.write_config(&policy(&world, "any"));
    let daemon = Daemon::start(&world);
    until(&daemon, true, "team-any", 1).await;
    let first = policy(&world, "reject");
    let rest = "\n[[rule]]\nname = \"z\"\nmatch = \"registry.test/z/**\"\nrequire = \"any\"\n";
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&world.config)
        .unwrap();
    file.write_all(first.as_bytes()).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let mut c = daemon.client().await;
    let v = verify(&mut c, IMAGE, "").await;
    assert_eq!(
        (v.allowed, v.rule.as_str(), v.policy_generation),
        (true, "team-any", 1),
        "the first half of the write was loaded: {v:?}"
    );
    file.write_all(rest.as_bytes()).unwrap();
    drop(file);
    until(&daemon, false, "team-reject", 2).await;
    let z = verify(&mut c, "registry.test/z/app:v1", "").await;
    assert_eq!(
        (z.allowed, z.rule.as_str(), z.policy_generation),
        (true, "z", 2),
        "{z:?}"
    );
}

/// A policy that loads but holds a rule that can never match (a registry written in
/// upper case, so that its images fall to another rule): the reload's event says so, as
/// `pullguard policy check` would. Before, a reload never ran the lint.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_says_what_policy_check_warns_about() {
    let world = World::new();
    world.write_config(&policy(&world, "any"));
    let daemon = Daemon::start(&world);
    until(&daemon, true, "team-any", 1).await;
    world.write_config(&format!(
        "{}\n[[rule]]\nname = \"upper\"\nmatch = \"Registry.test/other/**\"\nrequire = \"reject\"\n",
        policy(&world, "any")
    ));
    until(&daemon, true, "team-any", 2).await;
    let reloaded = world.events_of("policy.reloaded");
    let message = reloaded.last().unwrap()["message"].as_str().unwrap();
    assert!(
        message.contains("`pullguard policy check` warns: line ")
            && message.contains("rule upper can never match"),
        "{message}"
    );
}

/// A SIGHUP (`systemctl reload`) that lands while pullguardd is still starting: its
/// stream was made only when the reload triggers started, after the policy had loaded,
/// and before that the signal's default action killed the daemon. A policy of many
/// rules keeps the start busy long enough for the signal to land in it.
#[tokio::test(flavor = "multi_thread")]
async fn a_sighup_while_the_daemon_starts_does_not_kill_it() {
    let world = World::new();
    let mut text = policy(&world, "any");
    for i in 0..20_000 {
        text.push_str(&format!(
            "\n[[rule]]\nname = \"r{i}\"\nmatch = \"registry.test/r{i}/**\"\nrequire = \"any\"\n"
        ));
    }
    world.write_config(&text);
    let config = world.config.display().to_string();
    let hup = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(60));
        std::process::Command::new("pkill")
            .args(["-HUP", "-f", &format!("pullguardd --config {config}")])
            .status()
            .unwrap()
            .success()
    });
    let daemon = Daemon::start(&world);
    assert!(hup.join().unwrap(), "no pullguardd got the SIGHUP");
    // Alive and answering (the SIGHUP may have brought a reload of the same policy).
    let mut c = daemon.client().await;
    let v = verify(&mut c, IMAGE, "").await;
    assert_eq!((v.allowed, v.rule.as_str()), (true, "team-any"), "{v:?}");
}

/// A policy symlink re-pointed (no rename: a creation, no close after writing) at a file
/// whose modification time lies in the future (a copy that kept it, a skewed clock): the
/// new text must settle on its bytes alone. It never counted as settled before, so it
/// waited for a SIGHUP.
#[tokio::test(flavor = "multi_thread")]
async fn a_policy_dated_in_the_future_is_loaded_once_its_bytes_settle() {
    let world = World::new();
    let first = world.config.with_extension("first");
    let second = world.config.with_extension("second");
    std::fs::create_dir_all(world.config.parent().unwrap()).unwrap();
    std::fs::write(&first, policy(&world, "any")).unwrap();
    std::os::unix::fs::symlink(&first, &world.config).unwrap();
    let daemon = Daemon::start(&world);
    until(&daemon, true, "team-any", 1).await;
    std::fs::write(&second, policy(&world, "reject")).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&second)
        .unwrap()
        .set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(3600))
        .unwrap();
    // Past the watch's debounce of the write itself, then the re-pointing alone.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    std::fs::remove_file(&world.config).unwrap();
    std::os::unix::fs::symlink(&second, &world.config).unwrap();
    until(&daemon, false, "team-reject", 2).await;
}

/// A Notation trust store emptied (its revoked CA deleted) or removed: the rules naming it
/// refuse everything, and the start says so. Before, the load was refused, and on a reload
/// that kept the generation still trusting the deleted CA.
#[tokio::test(flavor = "multi_thread")]
async fn an_emptied_notation_store_refuses_its_rules() {
    let world = World::new();
    let store = world.keys.join("notation/truststore/x509/ca/acme");
    std::fs::create_dir_all(&store).unwrap();
    world.write_config(&format!(
        "{}[[rule]]\nname = \"notation\"\nmatch = \"registry.test/signed/**\"\nproofs = [\"notation\"]\nnotation_trust_stores = [\"ca:acme\"]\nnotation_identities = [\"*\"]\n",
        policy(&world, "any")
    ));
    let daemon = Daemon::start(&world);
    until(&daemon, true, "team-any", 1).await;
    let mut c = daemon.client().await;
    let signed = format!("registry.test/signed/app@sha256:{}", "a".repeat(64));
    let v = verify(&mut c, &signed, "").await;
    assert!(
        !v.allowed && v.reason == "rejected_by_policy" && v.message.contains("ca:acme"),
        "{v:?}"
    );
    let started = world.events_of("daemon.started");
    assert!(
        started.iter().any(|e| e["message"]
            .as_str()
            .unwrap()
            .contains("notation_trust_stores ca:acme")),
        "{started:?}"
    );
}

/// Files that decide trust are held to the rule the keys directory's index already was:
/// owned by root or pullguardd's user, writable by no one else. Before, a cosign key, a
/// Notation store or the policy file that another local user could write was read as it
/// was, and the next automatic reload trusted whatever that user put there.
#[test]
fn trust_files_others_can_write_are_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let world = World::new();
    let mode =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    let refused = |what: &str, needle: &str| {
        let Err(daemon::StartError::Config(problems)) = daemon::check_config(&world.config) else {
            panic!("{what}: loaded");
        };
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "{what}: {problems:?}"
        );
    };
    // A cosign key any user can write.
    let key = world.keys.join("team.pub");
    public_key(&key);
    world.write_config(&format!(
        "{}[[rule]]\nname = \"signed\"\nmatch = \"registry.test/signed/**\"\nproofs = [\"cosign\"]\ncosign_tlog = false\ncosign_keys = [\"team.pub\"]\n",
        policy(&world, "any")
    ));
    assert!(daemon::check_config(&world.config).is_ok());
    mode(&key, 0o666);
    refused("cosign key", "writable by group or others");
    mode(&key, 0o644);
    // A Notation store directory another user owns (a copy with `cp -a`).
    let store = world.keys.join("notation/truststore/x509/ca/acme");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::copy(&key, store.join("placeholder.pem")).unwrap();
    std::os::unix::fs::chown(&store, Some(65534), None).unwrap();
    world.write_config(&format!(
        "{}[[rule]]\nname = \"notation\"\nmatch = \"registry.test/signed/**\"\nproofs = [\"notation\"]\nnotation_trust_stores = [\"ca:acme\"]\nnotation_identities = [\"*\"]\n",
        policy(&world, "any")
    ));
    refused("notation store", "owned by uid 65534");
    // A trust server's CA file (its TLS pin) any user can write.
    let ca = world.keys.join("notary-ca.crt");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/notary-real/ca-pinned/ca.crt"
        ),
        &ca,
    )
    .unwrap();
    mode(&ca, 0o644);
    world.write_config(&format!(
        "{}[trust_server.hub]\nurl = \"https://127.0.0.1:4443\"\nca_file = \"{}\"\n\n[[rule]]\nname = \"notary\"\nmatch = \"registry.test/signed/**\"\ntrust_server = \"hub\"\n",
        policy(&world, "any"),
        ca.display()
    ));
    assert!(daemon::check_config(&world.config).is_ok());
    mode(&ca, 0o664);
    refused("trust server CA file", "trust server hub: ca_file:");
    mode(&ca, 0o644);
    // The policy file itself.
    world.write_config(&policy(&world, "any"));
    assert!(daemon::check_config(&world.config).is_ok());
    mode(&world.config, 0o666);
    refused("policy file", "policy file:");
}
