//! scripts/lib-install.sh, which the tests, the demo, the benchmarks and CI install
//! their Debian packages with, leaves no service of those packages running on the host.
//! Here with stand-ins for apt-get, dpkg and systemctl on PATH (a real install runs in
//! CI whenever a package is missing, on a machine without systemd).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

fn script(dir: &Path, name: &str, body: &str) {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn packages_install_without_starting_services_and_only_new_ones_are_disabled() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let log = tmp.path().join("log");
    let prc = tmp.path().join("policy-rc.d");
    let systemd = tmp.path().join("systemd");
    std::fs::create_dir(&systemd).unwrap();
    let log_s = log.display();
    let prc_s = prc.display();
    // apt-get notes its arguments and whether services were held back while it ran.
    script(
        &bin,
        "apt-get",
        &format!("echo \"apt-get $*\" >> {log_s}; if [ -x {prc_s} ] && ! {prc_s}; then echo held >> {log_s}; fi"),
    );
    // containerd is already on this host; docker-registry is not.
    script(&bin, "dpkg", "[ \"$2\" = containerd ]");
    script(
        &bin,
        "systemctl",
        &format!("echo \"systemctl $*\" >> {log_s}"),
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("bash")
        .arg("-c")
        .arg(". scripts/lib-install.sh; install_packages containerd docker-registry")
        .current_dir(&root)
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .env("PULLGUARD_POLICY_RC_D", &prc)
        .env("PULLGUARD_SYSTEMD_DIR", &systemd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("DPkg::Lock::Timeout=300"),
        "waits for apt's lock: {log}"
    );
    assert!(
        log.contains("install -y containerd docker-registry"),
        "{log}"
    );
    assert!(
        log.contains("held"),
        "no service may start during the install: {log}"
    );
    assert!(!prc.exists(), "its own policy-rc.d is removed afterwards");
    assert!(
        log.contains("systemctl disable --now docker-registry"),
        "{log}"
    );
    assert!(
        !log.contains("disable --now containerd"),
        "the host's own containerd is left alone: {log}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("disabled the docker-registry service"),
        "and says so"
    );
}
