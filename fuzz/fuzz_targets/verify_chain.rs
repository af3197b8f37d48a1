//! A whole repository from arbitrary bytes: files separated by 0xff bytes, named in
//! order root, timestamp, snapshot, targets, targets/releases, 1.root. Verification and
//! tag resolution never panic, whatever the trust server serves.
#![no_main]
use libfuzzer_sys::fuzz_target;
use trust_core::{verify, RepoFiles, RootAnchor, TagPolicy, VerifyOptions};

const NAMES: [&str; 6] = [
    "root",
    "timestamp",
    "snapshot",
    "targets",
    "targets/releases",
    "1.root",
];

fuzz_target!(|data: &[u8]| {
    let mut files = RepoFiles::new();
    for (name, bytes) in NAMES.iter().zip(data.split(|b| *b == 0xff)) {
        files.insert(*name, bytes.to_vec());
    }
    let now = time::macros::datetime!(2026-11-25 12:00 UTC);
    let opts = VerifyOptions::new("registry.test/pullguard/app", now, RootAnchor::FirstUse);
    if let Ok(repo) = verify(&files, &opts) {
        let _ = repo.resolve_tag("v1", TagPolicy::Docker);
        let _ = repo.resolve_tag("v2", TagPolicy::AnyRole);
        let _ = repo.signed_targets().count();
    }
});
