//! The operator docs stay in step with the code: the reason codes and event kinds of
//! docs/reasons.md are exactly the contract's (api::codes), every policy key has its row
//! in docs/policy.md.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::Path;

fn doc(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs")
            .join(name),
    )
    .unwrap()
}

/// The codes in `docs/reasons.md`: the first backquoted word of each table row, or of
/// each `a` / `b` pair in one.
fn documented_codes(reasons: &str) -> std::collections::BTreeSet<String> {
    reasons
        .lines()
        .filter(|l| l.starts_with("| `"))
        .flat_map(|l| {
            let first = l.split(" | ").next().unwrap_or("");
            first
                .split('`')
                .enumerate()
                .filter(|(i, _)| i % 2 == 1)
                .map(|(_, c)| c.to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The reason codes docs/reasons.md tables list are exactly the contract's, and each
/// has its remedy; trust-core's codes are among them.
#[test]
fn reason_codes_and_the_docs_are_the_same_set() {
    let reasons = doc("reasons.md");
    let documented = documented_codes(&reasons);
    let codes: std::collections::BTreeSet<String> = api::codes::ReasonCode::ALL
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect();
    assert_eq!(documented, codes, "docs/reasons.md tables vs ReasonCode");
    for r in trust_core::Reason::ALL {
        assert!(
            api::codes::ReasonCode::parse(r.as_str()).is_some(),
            "{} (trust-core) is no ReasonCode",
            r.as_str()
        );
    }
}

/// Contract values stay enums inside the code: nothing outside the codes crate turns
/// text back into a reason code, so a reason without its code is a compile error (an
/// exhaustive match), never an `internal_error` at run time.
#[test]
fn no_reason_code_is_parsed_back_from_text() {
    fn walk(dir: &Path, found: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, found);
            } else if p.extension().is_some_and(|x| x == "rs")
                && std::fs::read_to_string(&p)
                    .unwrap()
                    .contains("ReasonCode::parse(")
            {
                found.push(p.display().to_string());
            }
        }
    }
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut found = Vec::new();
    for c in std::fs::read_dir(&crates).unwrap() {
        let c = c.unwrap().path();
        if c.file_name().is_some_and(|n| n != "codes") && c.join("src").is_dir() {
            walk(&c.join("src"), &mut found);
        }
    }
    assert!(
        found.is_empty(),
        "reason codes parsed from text in {found:?}"
    );
}

/// docs/architecture.md's crate table names each workspace crate's workspace
/// dependencies exactly as its Cargo.toml does.
#[test]
fn the_crate_table_is_the_dependency_graph() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let arch = doc("architecture.md");
    let section = arch.split("## Crates").nth(1).unwrap();
    let mut documented = std::collections::BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].split('`').nth(1).unwrap().to_owned();
        let deps: std::collections::BTreeSet<String> = cells[2]
            .split(',')
            .map(|d| d.trim().to_owned())
            .filter(|d| !d.is_empty() && d != "—")
            .collect();
        documented.insert(name, deps);
    }
    let mut manifests: Vec<std::path::PathBuf> = std::fs::read_dir(root.join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path().join("Cargo.toml"))
        .collect();
    manifests.push(root.join("bench/driver/Cargo.toml"));
    let mut actual = std::collections::BTreeMap::new();
    for m in manifests {
        let text = std::fs::read_to_string(&m).unwrap();
        let doc: toml::Table = text.parse().unwrap();
        let name = doc["package"]["name"].as_str().unwrap().to_owned();
        let deps = doc
            .get("dependencies")
            .and_then(|d| d.as_table())
            .map(|t| {
                t.keys()
                    .filter(|k| root.join("crates").join(k.as_str()).is_dir())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        actual.insert(name, deps);
    }
    assert_eq!(
        documented, actual,
        "docs/architecture.md ## Crates vs Cargo.toml"
    );
}

/// The event kinds of docs/reasons.md (its "Event kinds" section) are exactly the
/// contract's.
#[test]
fn event_kinds_and_the_docs_are_the_same_set() {
    let reasons = doc("reasons.md");
    let section = reasons
        .split("## Event kinds")
        .nth(1)
        .expect("an Event kinds section");
    let documented: std::collections::BTreeSet<String> = section
        .split('`')
        .enumerate()
        .filter(|(i, w)| i % 2 == 1 && w.contains('.') && !w.contains('/') && !w.contains(' '))
        .map(|(_, w)| w.to_owned())
        .collect();
    let kinds: std::collections::BTreeSet<String> = api::codes::EventKind::ALL
        .iter()
        .map(|k| k.as_str().to_owned())
        .collect();
    assert_eq!(
        documented, kinds,
        "docs/reasons.md event kinds vs EventKind"
    );
}

#[test]
fn every_policy_key_is_documented() {
    let policy = doc("policy.md");
    let daemon_keys = [
        "socket",
        "allowed_uids",
        "allowed_gids",
        "state_dir",
        "keys_dir",
        "events_file",
        "events_max_bytes",
        "events_keep",
        "stdout_events",
        "syslog",
        "metrics",
        "cache_ttl",
        "containerd_socket",
    ];
    let server_keys = ["url", "ca_file", "timeout"];
    let rule_keys = [
        "mode",
        "require",
        "proofs",
        "trust_server",
        "roles",
        "roles_required",
        "max_timestamp_age",
        "on_unreachable",
        "tofu",
        "root_key_ids",
        "root_cas",
        "root_certs",
    ];
    let sections = [
        ("[daemon]", &daemon_keys[..]),
        ("[trust_server.x]", &server_keys[..]),
        ("[defaults]", &rule_keys[..]),
    ];
    for (section, keys) in sections {
        for k in keys {
            assert!(
                policy.contains(&format!("| `{k}` |")),
                "{k} is missing from docs/policy.md"
            );
            // The key is one the parser knows (a wrong value type is fine here).
            let text = format!("{section}\n{k} = 1\n");
            if let Err(e) = policy::Policy::parse(Path::new("p.toml"), &text) {
                assert!(!e.to_string().contains("unknown key"), "{section} {k}: {e}");
            }
        }
    }
    for k in ["name", "match"] {
        assert!(
            policy.contains(&format!("| `{k}` |")),
            "{k} is missing from docs/policy.md"
        );
    }
}

/// Checks that every test a doc's table rows name exists in the file it names (the
/// suite itself shows they pass); returns how many were checked. `path::name` sets the
/// file; bare names that follow in the row use it.
fn named_tests_exist(doc_name: &str) -> usize {
    let text = doc(doc_name);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let short = [
        ("reasons.rs", "crates/trust-core/tests/reasons.rs"),
        ("trust_verify.rs", "crates/cli/tests/trust_verify.rs"),
        (
            "real_signatures.rs",
            "crates/sigstore-core/tests/real_signatures.rs",
        ),
        ("cosign.rs", "crates/daemon/tests/cosign.rs"),
        (
            "real_envelopes.rs",
            "crates/notation-core/tests/real_envelopes.rs",
        ),
        ("notation.rs", "crates/daemon/tests/notation.rs"),
    ];
    let mut checked = 0;
    for line in text.lines().filter(|l| l.starts_with('|')) {
        let mut file: Option<String> = None;
        for (i, token) in line.split('`').enumerate() {
            if i % 2 == 0 {
                continue;
            }
            let name = if let Some((path, name)) = token.split_once("::") {
                let path = short
                    .iter()
                    .find(|(s, _)| *s == path)
                    .map_or(path, |(_, full)| *full);
                file = Some(path.to_owned());
                name
            } else {
                token
            };
            let is_ident = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                && name.contains('_');
            let Some(f) = &file else { continue };
            if !is_ident || !f.ends_with(".rs") {
                continue;
            }
            let source = std::fs::read_to_string(root.join(f))
                .unwrap_or_else(|e| panic!("{f} (named in docs/{doc_name}): {e}"));
            assert!(
                source.contains(&format!("fn {name}(")),
                "docs/{doc_name} names {f}::{name}, which does not exist"
            );
            checked += 1;
        }
    }
    checked
}

/// docs/threat-model.md: every test it names exists.
#[test]
fn every_test_the_threat_model_names_exists() {
    let checked = named_tests_exist("threat-model.md");
    assert!(
        checked >= 40,
        "only {checked} tests found in the threat model"
    );
}

/// docs/enforcement.md: every row of "What backs each row" names tests that exist, for
/// containerd 2.x and 1.6.
#[test]
fn every_test_the_enforcement_table_names_exists() {
    let checked = named_tests_exist("enforcement.md");
    assert!(
        checked >= 16,
        "only {checked} tests found in docs/enforcement.md"
    );
}

/// A newcomer after the quick start: the README says where the binaries are and how long
/// the first build takes, and the demo shows cargo's progress instead of minutes of
/// silence.
#[test]
fn the_quick_start_says_where_things_are_and_how_long_they_take() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let quick = readme
        .split("## Quick start")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a quick start section");
    for needed in [
        "scripts/demo",
        "scripts/test",
        "target/debug/",
        "cargo install --locked --path crates/cli",
        "first build takes",
        "Rust 1.95",
    ] {
        assert!(quick.contains(needed), "quick start lacks {needed:?}");
    }
    let demo = std::fs::read_to_string(root.join("scripts/demo")).unwrap();
    assert!(
        demo.contains("cargo build --locked") && !demo.contains("cargo build --quiet"),
        "the demo's build shows its progress"
    );
}

/// The daemon listens where the clients look when nothing says otherwise.
#[test]
fn the_daemon_and_its_clients_default_to_one_socket() {
    assert_eq!(policy::DEFAULT_SOCKET, api::DEFAULT_SOCKET);
    // The policy's NRI default is containerd's own.
    assert_eq!(policy::DEFAULT_NRI_SOCKET, nri::DEFAULT_SOCKET);
}

/// The README's first screen says what each proof kind gets today and which to choose
/// now that Docker's Notary closes, before any install detail.
#[test]
fn the_first_screen_says_which_proof_to_choose() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let first = &readme[..readme.find("## Quick start").unwrap()];
    assert!(first.lines().count() < 60, "the first screen is too long");
    for needle in [
        "| `\"cosign\"` (Sigstore)",
        "| `\"notation\"` (Notary Project)",
        "| `\"notary-v1\"` (Docker Content Trust)",
        "2026-12-08",
        "choose it",
    ] {
        assert!(
            first.contains(needle),
            "the README's first screen lacks {needle:?}"
        );
    }
}
