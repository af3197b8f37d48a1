//! Trusted state on disk: durable, checked, never silently absent.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration as StdDuration;

use key_store::{Error, StateStore};
use time::macros::datetime;
use time::Duration;
use trust_core::TrustedState;

fn state(gun: &str, n: u64) -> TrustedState {
    TrustedState {
        gun: gun.to_owned(),
        root: format!(
            "{{\"signed\":{{\"version\":{n}}},\"pad\":\"{}\"}}",
            "x".repeat(4000)
        ),
        versions: [("timestamp".to_owned(), n), ("root".to_owned(), 1)]
            .into_iter()
            .collect(),
    }
}

const T0: time::OffsetDateTime = datetime!(2026-06-01 00:00 UTC);

#[test]
fn saves_and_loads_with_tofu_record() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = StateStore::open(&tmp.path().join("state")).expect("open");
    assert_eq!(store.load("a/b").expect("load"), None);
    let tofu = key_store::TofuRecord {
        first_use: "2026-06-01T00:00:00Z".into(),
        root_version: 1,
        root_key_ids: vec!["ab".into()],
    };
    store
        .record_verified(state("a/b", 8), T0, Some(tofu.clone()))
        .expect("save");
    let rec = store.load("a/b").expect("load").expect("some");
    assert_eq!(rec.trusted.versions["timestamp"], 8);
    assert_eq!(rec.tofu, Some(tofu.clone()));
    // A later verification keeps the original TOFU record.
    store
        .record_verified(state("a/b", 9), T0, None)
        .expect("save");
    assert_eq!(
        store.load("a/b").expect("load").expect("some").tofu,
        Some(tofu)
    );
    assert_eq!(store.repositories(), vec!["a/b".to_owned()]);
    let mode = std::fs::metadata(store.path_for("a/b"))
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert!(store.forget("a/b").expect("forget"));
    assert_eq!(store.load("a/b").expect("load"), None);
}

#[test]
fn truncated_or_altered_state_is_an_error_not_absence() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = StateStore::open(tmp.path()).expect("open");
    store
        .record_verified(state("a/b", 8), T0, None)
        .expect("save");
    let path = store.path_for("a/b");
    let full = std::fs::read(&path).expect("read");

    std::fs::write(&path, &full[..full.len() / 2]).expect("truncate");
    let err = store.load("a/b").expect_err("truncated");
    assert!(matches!(err, Error::CorruptState { .. }), "{err}");
    assert!(err.to_string().contains("forget-state a/b"), "{err}");

    let altered = String::from_utf8(full.clone())
        .expect("utf8")
        .replace("\"timestamp\":8", "\"timestamp\":1");
    std::fs::write(&path, altered).expect("write");
    let err = store.load("a/b").expect_err("altered");
    assert!(err.to_string().contains("checksum"), "{err}");

    std::fs::write(&path, b"").expect("empty");
    assert!(matches!(store.load("a/b"), Err(Error::CorruptState { .. })));
}

#[test]
fn clock_set_backwards_is_noticed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = StateStore::open(tmp.path()).expect("open");
    store.check_clock(T0).expect("no record yet");
    store
        .record_verified(state("a/b", 1), T0, None)
        .expect("save");
    store
        .check_clock(T0 - Duration::minutes(2))
        .expect("within tolerance");
    let err = store
        .check_clock(T0 - Duration::days(1))
        .expect_err("backwards");
    assert!(matches!(err, Error::ClockWentBackwards { .. }), "{err}");
    assert_eq!(
        err.reason_code().map(|c| c.as_str()),
        Some("clock_went_backwards")
    );
    // Survives a restart: it is on disk.
    let again = StateStore::open(tmp.path()).expect("reopen");
    assert!(again.check_clock(T0 - Duration::days(1)).is_err());
    assert!(again.forget_clock().expect("forget"));
    again
        .check_clock(T0 - Duration::days(1))
        .expect("forgotten");
}

#[test]
fn refuses_state_others_can_write_or_someone_else_owns() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("state");
    let store = StateStore::open(&dir).expect("open");
    store
        .record_verified(state("a/b", 1), T0, None)
        .expect("save");

    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let err = StateStore::open(&dir).expect_err("world-writable dir");
    assert!(
        err.to_string()
            .contains(&format!("chmod go-w {}", dir.display())),
        "{err}"
    );
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");

    let file = store.path_for("a/b");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    assert!(matches!(
        store.load("a/b"),
        Err(Error::InsecurePermissions { .. })
    ));
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::chown(&file, Some(4242), None).expect("chown");
        let err = store.load("a/b").expect_err("foreign owner");
        assert!(
            matches!(err, Error::ForeignOwner { owner: 4242, .. }),
            "{err}"
        );
    }
}

/// Child mode of `killed_writer_never_leaves_a_torn_state`: rewrite state forever.
#[test]
fn writer_child() {
    let Some(dir) = std::env::var_os("PULLGUARD_STATE_WRITER") else {
        return;
    };
    let store = StateStore::open(Path::new(&dir)).expect("open");
    // Each round writes numbers above every earlier round's, so going back would mean a
    // lost or torn write.
    let base: u64 = std::env::var("PULLGUARD_STATE_BASE")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(2);
    for n in base.. {
        store
            .record_verified(state("a/b", n), T0, None)
            .expect("save");
    }
}

#[test]
fn killed_writer_never_leaves_a_torn_state() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = StateStore::open(tmp.path()).expect("open");
    store
        .record_verified(state("a/b", 1), T0, None)
        .expect("first");
    let exe = std::env::current_exe().expect("exe");
    let mut last = 1;
    for round in 0..10 {
        let mut child = Command::new(&exe)
            .args(["--exact", "writer_child", "--nocapture"])
            .env("PULLGUARD_STATE_WRITER", tmp.path())
            .env(
                "PULLGUARD_STATE_BASE",
                ((round + 1) * 1_000_000).to_string(),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(StdDuration::from_millis(30 + 15 * round));
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
        let rec = store
            .load("a/b")
            .unwrap_or_else(|e| panic!("round {round}: state torn by a killed writer: {e}"))
            .expect("state still present");
        let n = rec.trusted.versions["timestamp"];
        assert!(n >= last, "went back from {last} to {n}");
        last = n;
    }
    assert!(last > 1, "the writer never wrote");
}

/// `prior` + `verify_and_record`, the one path the daemon, `trust verify --state-dir` and
/// the publisher take: first use recorded with its TOFU record; an older timestamp
/// afterwards is a rollback and records nothing; a clock behind the last verification
/// is refused before anything is verified.
#[test]
fn verify_and_record_records_first_use_refuses_rollback_and_a_clock_gone_back() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = StateStore::open(&tmp.path().join("state")).expect("open");
    let gun = "registry.test/app";
    let mut repo = test_support::Repo::new(gun, T0);
    repo.versions.insert("timestamp", 2);
    let newer = repo.files();

    let prior = store.prior(gun, T0).expect("prior");
    assert!(prior.record.is_none());
    let opts = trust_core::VerifyOptions::new(gun, T0, trust_core::RootAnchor::FirstUse);
    let v = store
        .verify_and_record(&prior, &newer, opts)
        .expect("first use verifies");
    assert!(v.recorded_in.is_some());
    let record = store.load(gun).expect("load").expect("recorded");
    assert_eq!(record.trusted.versions["timestamp"], 2);
    assert!(record.tofu.is_some(), "first use keeps a TOFU record");

    // Verifying the same data again moves nothing, so nothing is written.
    let later = T0 + Duration::hours(1);
    let prior = store.prior(gun, later).expect("prior");
    let opts = trust_core::VerifyOptions::new(gun, later, trust_core::RootAnchor::FirstUse);
    let v = store
        .verify_and_record(&prior, &newer, opts)
        .expect("same data verifies");
    assert!(v.recorded_in.is_none());

    repo.versions.insert("timestamp", 1);
    let older = repo.files();
    let opts = trust_core::VerifyOptions::new(gun, later, trust_core::RootAnchor::FirstUse);
    match store.verify_and_record(&prior, &older, opts) {
        Err(Error::Untrusted(e)) => assert_eq!(e.reason().as_str(), "rollback", "{e}"),
        other => panic!("an older timestamp must be a rollback: {other:?}"),
    }
    let record = store.load(gun).expect("load").expect("kept");
    assert_eq!(record.trusted.versions["timestamp"], 2, "nothing recorded");

    match store.prior(gun, T0 - Duration::hours(1)) {
        Err(e @ Error::ClockWentBackwards { .. }) => {
            assert_eq!(
                e.reason_code().map(|c| c.as_str()),
                Some("clock_went_backwards")
            )
        }
        other => panic!("a clock behind the last verification: {other:?}"),
    }
}

/// cache_flood: every repository pulled once leaves trust data on disk; a node pulling
/// many names must not fill its disk. Past the bounds the least recently written go.
#[test]
fn the_trust_data_cache_on_disk_stays_within_its_bounds() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = StateStore::open(tmp.path()).expect("open");
    let count = |dir: &std::path::Path| std::fs::read_dir(dir.join("cache")).unwrap().count();
    for i in 0..10 {
        store
            .save_cache_within(&format!("repo{i}"), &[i; 100], 4, 1 << 20)
            .expect("save");
        // Distinct modification times, so that "least recently written" is well defined.
        std::thread::sleep(std::time::Duration::from_millis(15));
    }
    assert_eq!(count(tmp.path()), 4, "at most 4 files");
    assert_eq!(
        store.load_cache("repo0", 1 << 20).unwrap(),
        None,
        "the oldest went"
    );
    assert_eq!(
        store.load_cache("repo9", 1 << 20).unwrap(),
        Some(vec![9; 100]),
        "the newest stays"
    );
    // By bytes: 300 allowed; the older blobs go until the total fits, never the new one.
    store
        .save_cache_within("big", &[1; 250], 100, 300)
        .expect("save");
    assert_eq!(
        store.load_cache("big", 1 << 20).unwrap().map(|b| b.len()),
        Some(250),
        "the blob just written is never the one removed"
    );
    assert!(count(tmp.path()) <= 2, "{} files", count(tmp.path()));
}

/// pullguardd's path: the repository's record is durable when the verification
/// returns; a due clock record is handed back, and written when the caller says. Not
/// due (recorded less than a minute before), none is handed back.
#[test]
fn the_clock_record_can_be_left_to_the_caller_and_then_guards_the_next_verification() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = StateStore::open(&tmp.path().join("state")).expect("open");
    let gun = "registry.test/app";
    let mut repo = test_support::Repo::new(gun, T0);
    let prior = store.prior(gun, T0).expect("prior");
    let opts = trust_core::VerifyOptions::new(gun, T0, trust_core::RootAnchor::FirstUse);
    let v = store
        .verify_and_record_clock_after(&prior, &repo.files(), opts)
        .expect("first use verifies");
    assert!(store.load(gun).expect("load").is_some(), "record written");
    assert_eq!(store.last_verified().expect("clock"), None, "clock left");
    v.clock_due
        .expect("the clock is due")
        .write(&store)
        .expect("write");
    assert_eq!(store.last_verified().expect("clock"), Some(T0));
    assert!(matches!(
        store.prior(gun, T0 - Duration::hours(1)),
        Err(Error::ClockWentBackwards { .. })
    ));

    // Thirty seconds later: the state moves, the clock is not due.
    repo.versions.insert("timestamp", 2);
    let soon = T0 + Duration::seconds(30);
    let prior = store.prior(gun, soon).expect("prior");
    let opts = trust_core::VerifyOptions::new(gun, soon, trust_core::RootAnchor::FirstUse);
    let v = store
        .verify_and_record_clock_after(&prior, &repo.files(), opts)
        .expect("verifies");
    assert!(v.recorded_in.is_some() && v.clock_due.is_none());
    // The plain path writes a due clock itself.
    repo.versions.insert("timestamp", 3);
    let later = T0 + Duration::hours(1);
    let prior = store.prior(gun, later).expect("prior");
    let opts = trust_core::VerifyOptions::new(gun, later, trust_core::RootAnchor::FirstUse);
    let v = store
        .verify_and_record(&prior, &repo.files(), opts)
        .expect("verifies");
    assert!(v.clock_due.is_none());
    assert_eq!(store.last_verified().expect("clock"), Some(later));
}
