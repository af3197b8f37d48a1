//! Trust anchors from a keys directory.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::Path;

use key_store::anchors::{pin, unpin, PinSpec};
use key_store::{Error, TrustAnchors};

fn real(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/notary-real")
        .join(p)
}

fn write_index(dir: &Path, text: &str) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join("index.toml"), text).expect("write");
}

#[test]
fn most_specific_pattern_wins() {
    let tmp = tempfile::tempdir().expect("tmp");
    let id = |c: char| c.to_string().repeat(64);
    write_index(
        tmp.path(),
        &format!(
            r#"
[[anchor]]
repository = "*"
tofu = true

[[anchor]]
repository = "registry.test/*"
root_key_ids = ["{}"]

[[anchor]]
repository = "registry.test/team/*"
root_key_ids = ["{}"]

[[anchor]]
repository = "registry.test/team/app"
root_key_ids = ["{}"]
"#,
            id('a'),
            id('b'),
            id('c')
        ),
    );
    let (anchors, warnings) = TrustAnchors::load(tmp.path()).expect("load");
    assert!(warnings.is_empty(), "{warnings:?}");
    let pick = |gun: &str| anchors.for_gun(gun).map(|a| a.repository.clone());
    assert_eq!(
        pick("registry.test/team/app").as_deref(),
        Some("registry.test/team/app")
    );
    assert_eq!(
        pick("registry.test/team/app2").as_deref(),
        Some("registry.test/team/*")
    );
    assert_eq!(
        pick("registry.test/other").as_deref(),
        Some("registry.test/*")
    );
    assert_eq!(pick("docker.io/library/alpine").as_deref(), Some("*"));
    assert!(anchors.for_gun("docker.io/library/alpine").expect("*").tofu);
    assert!(!anchors.for_gun("registry.test/x").expect("prefix").tofu);
}

#[test]
fn bad_files_are_reported_and_never_trusted() {
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::write(tmp.path().join("garbage.crt"), b"not a certificate").expect("write");
    std::fs::copy(real("ca-pinned/ca.crt"), tmp.path().join("ca.crt")).expect("copy");
    write_index(
        tmp.path(),
        r#"
[[anchor]]
repository = "registry.test/a"
root_certs = ["garbage.crt", "missing.crt"]
root_cas = ["ca.crt"]
root_key_ids = ["xyz"]

[[anchor]]
repository = "registry.test/b*c"
tofu = true
"#,
    );
    let (anchors, warnings) = TrustAnchors::load(tmp.path()).expect("load");
    let text: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert!(text.iter().any(|w| w.contains("garbage.crt")), "{text:?}");
    assert!(text.iter().any(|w| w.contains("missing.crt")), "{text:?}");
    assert!(text.iter().any(|w| w.contains("\"xyz\"")), "{text:?}");
    assert!(
        text.iter().any(|w| w.contains("registry.test/b*c")),
        "{text:?}"
    );
    let a = anchors.for_gun("registry.test/a").expect("anchor");
    assert!(a.pins.certs.is_empty() && a.pins.key_ids.is_empty());
    assert_eq!(a.pins.cas.len(), 1);
    assert!(
        anchors.for_gun("registry.test/bxc").is_none(),
        "skipped entry matches nothing"
    );
}

#[test]
fn index_errors_name_line_and_column() {
    let tmp = tempfile::tempdir().expect("tmp");
    write_index(tmp.path(), "[[anchor]]\nrepository = \"a\"\ntofuu = true\n");
    match TrustAnchors::load(tmp.path()) {
        Err(Error::Index {
            line,
            column,
            message,
            ..
        }) => {
            assert_eq!((line, column), (3, 1), "{message}");
            assert!(message.contains("tofuu"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn pin_and_unpin_edit_the_index() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("keys");
    pin(
        &dir,
        "registry.test/pullguard/*",
        &PinSpec::Ca(real("ca-pinned/ca.crt")),
    )
    .expect("pin ca");
    pin(
        &dir,
        "registry.test/pullguard/*",
        &PinSpec::KeyId("AB".repeat(32)),
    )
    .expect("pin id");
    pin(&dir, "docker.io/*", &PinSpec::Tofu).expect("tofu");
    assert!(pin(&dir, "a*b*", &PinSpec::Tofu).is_err());
    // A short key ID (as notary and inspect's table show it) is refused for what it is,
    // not blamed on an index position that was never read.
    let short = pin(
        &dir,
        "registry.test/x",
        &PinSpec::KeyId("b35fb422e19e".into()),
    )
    .expect_err("short id")
    .to_string();
    assert!(
        short.contains("not 64 hex digits") && !short.contains("index.toml"),
        "{short}"
    );
    let (anchors, warnings) = TrustAnchors::load(&dir).expect("load");
    assert!(warnings.is_empty(), "{warnings:?}");
    let a = anchors
        .for_gun("registry.test/pullguard/app")
        .expect("anchor");
    assert_eq!(a.pins.cas.len(), 1);
    assert_eq!(a.pins.key_ids, vec!["ab".repeat(32)]);
    assert!(anchors.for_gun("docker.io/library/x").expect("tofu").tofu);
    assert!(unpin(&dir, "docker.io/*").expect("unpin"));
    assert!(!unpin(&dir, "docker.io/*").expect("again"));
    let (anchors, _) = TrustAnchors::load(&dir).expect("load");
    assert!(anchors.for_gun("docker.io/library/x").is_none());
}

#[test]
fn refuses_an_index_others_can_write() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().expect("tmp");
    write_index(tmp.path(), "");
    std::fs::set_permissions(
        tmp.path().join("index.toml"),
        std::fs::Permissions::from_mode(0o646),
    )
    .expect("chmod");
    assert!(matches!(
        TrustAnchors::load(tmp.path()),
        Err(Error::InsecurePermissions { .. })
    ));
}

/// A Kubernetes Secret volume: a tmpfs whose root is mode 1777 with the kubelet's
/// `..data` symlink, mounted read-only into pullguard's container. Mode bits grant no
/// write on a read-only mount, so the keys in it load; the same directory mounted
/// read-write is refused, and so is a read-only world-writable directory that is not a
/// kubelet volume (a read-only bind of a host's world-writable directory stays writable
/// from the host): no sticky bit, no `..data`, or a `..data` someone else owns. Real
/// mounts (root).
#[test]
fn a_world_writable_directory_counts_only_where_no_one_can_write_it() {
    use std::os::unix::fs::PermissionsExt as _;
    use std::process::Command;
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("keys");
    std::fs::create_dir(&dir).expect("mkdir");
    let run = |args: &[&str]| {
        let st = Command::new(args[0])
            .args(&args[1..])
            .arg(&dir)
            .status()
            .expect("mount");
        assert!(st.success(), "{args:?} (these tests run as root)");
    };
    // Loads the keys of a fresh tmpfs of `mode`, laid out by `layout`, read-write
    // then read-only.
    let load = |mode: &str, layout: &dyn Fn(&Path)| {
        run(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("mode={mode},size=1m"),
            "tmpfs",
        ]);
        write_index(&dir, "");
        layout(&dir);
        let writable = TrustAnchors::load(&dir).map(|_| ());
        run(&["mount", "-o", "remount,ro"]);
        let read_only = TrustAnchors::load(&dir).map(|_| ());
        run(&["umount"]);
        (writable, read_only)
    };
    let kubelet = |d: &Path| {
        std::fs::create_dir(d.join("..2026_12_06_10_00_00.1")).expect("mkdir");
        std::os::unix::fs::symlink("..2026_12_06_10_00_00.1", d.join("..data")).expect("ln");
        assert_eq!(
            std::fs::metadata(d).expect("stat").permissions().mode() & 0o7777,
            0o1777
        );
    };
    let (writable, read_only) = load("1777", &kubelet);
    assert!(
        matches!(writable, Err(Error::InsecurePermissions { .. })),
        "{writable:?}"
    );
    assert!(read_only.is_ok(), "{read_only:?}");
    let insecure = |r: &key_store::Result<()>| {
        matches!(
            r,
            Err(Error::InsecurePermissions { .. } | Error::WritableVolumeRoot { .. })
        )
    };
    // Not a kubelet volume: refused read-only too.
    let (_, no_data) = load("1777", &|_: &Path| ());
    assert!(insecure(&no_data), "no ..data: {no_data:?}");
    let (_, no_sticky) = load("0777", &|d: &Path| {
        std::os::unix::fs::symlink(".", d.join("..data")).expect("ln");
    });
    // A ConfigMap's root (0777): refused, saying what to mount instead.
    assert!(
        matches!(&no_sticky, Err(e @ Error::WritableVolumeRoot { .. }) if e.to_string().contains("Secret")),
        "no sticky bit: {no_sticky:?}"
    );
    let (_, foreign_data) = load("1777", &|d: &Path| {
        kubelet(d);
        rustix::fs::chownat(
            rustix::fs::CWD,
            d.join("..data"),
            Some(rustix::process::Uid::from_raw(65534)),
            None,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .expect("lchown");
    });
    assert!(
        insecure(&foreign_data),
        "..data of another user: {foreign_data:?}"
    );
}

/// A symlink someone else owns is refused even when it points at a file of root's: its
/// owner chooses what pullguard reads.
#[test]
fn a_symlink_of_another_user_is_refused_whatever_it_points_to() {
    let tmp = tempfile::tempdir().expect("tmp");
    write_index(tmp.path(), "");
    let index = tmp.path().join("index.toml");
    let real = tmp.path().join("real.toml");
    std::fs::rename(&index, &real).expect("mv");
    std::os::unix::fs::symlink("real.toml", &index).expect("ln");
    assert!(
        TrustAnchors::load(tmp.path()).is_ok(),
        "our own symlink is fine"
    );
    rustix::fs::chownat(
        rustix::fs::CWD,
        &index,
        Some(rustix::process::Uid::from_raw(65534)),
        None,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .expect("lchown");
    let r = TrustAnchors::load(tmp.path());
    assert!(
        matches!(r, Err(Error::ForeignOwner { owner: 65534, .. })),
        "{r:?}"
    );
}
