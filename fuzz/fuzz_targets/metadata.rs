//! Each metadata role's parser (root, timestamp, snapshot, targets, delegations): the
//! first byte picks the role, the rest is the file. Never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use trust_core::metadata::{parse_meta_role, parse_root, parse_targets};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    match pick % 5 {
        0 => drop(parse_root("root", bytes)),
        1 => drop(parse_meta_role("timestamp", "Timestamp", bytes)),
        2 => drop(parse_meta_role("snapshot", "Snapshot", bytes)),
        3 => drop(parse_targets("targets", bytes)),
        _ => drop(parse_targets("targets/releases", bytes)),
    }
});
