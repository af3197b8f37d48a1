//! The policy crate's unit tests: parsing, precedence, globs.

use std::path::Path;

use super::*;
use crate::glob::{backtrack, table_match};

const BASE: &str = r#"
[trust_server.main]
url = "https://notary.example.com"

[defaults]
trust_server = "main"
"#;

fn policy(rules: &str) -> Result<Policy, PolicyError> {
    Policy::parse(Path::new("policy.toml"), &format!("{BASE}{rules}"))
}

#[test]
fn load_refuses_oversized_empty_rule_less_and_directory_paths() {
    let dir = std::env::temp_dir().join(format!("pullguard-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("p.toml");
    let rule = "[[rule]]\nname = \"a\"\nmatch = \"**\"\nrequire = \"any\"\n";
    let mut big = String::from(rule);
    big.push_str(&"#".repeat(usize::try_from(MAX_POLICY_BYTES).unwrap()));
    let cases: [(&str, &str); 3] = [
        (&big, "larger than 16 MiB"),
        ("  \n", "is empty"),
        ("[daemon]\n", "no [[rule]]"),
    ];
    for (text, want) in cases {
        std::fs::write(&file, text).unwrap();
        let err = Policy::load(&file).unwrap_err().to_string();
        assert!(err.contains(want), "{want}: {err}");
    }
    std::fs::write(&file, rule).unwrap();
    assert_eq!(Policy::load(&file).unwrap().rules.len(), 1);
    let err = Policy::load(&dir).unwrap_err().to_string();
    assert!(err.contains("is a directory"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn rule_name(p: &Policy, image: &str) -> Option<String> {
    p.rule_for(&ImageRef::parse(image).expect("ref"))
        .map(|r| r.name.clone())
}

#[test]
fn hostile_references_against_many_stars_finish_and_agree() {
    let g = Glob::new("**a**a**a**a**a**b").expect("glob");
    let long: String = "a".repeat(4000);
    let t = std::time::Instant::now();
    assert!(!g.matches(&long));
    assert!(g.matches(&format!("{long}b")));
    // Generous bound: the point is "not hours", not a timing target.
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    // Both matchers agree on ordinary cases.
    for (p, s) in [
        ("registry.test/*/app:*", "registry.test/team/app:v1"),
        ("registry.test/*/app:*", "registry.test/a/b/app:v1"),
        ("registry.test/**", "registry.test/a/b/app:v1"),
        ("registry.test/?eam/**", "registry.test/team/x:1"),
        ("registry.test/?eam/**", "registry.test//x:1"),
        ("*", "a/b"),
        ("a*b*c", "aXbYc"),
    ] {
        let g = Glob::new(p).expect("glob");
        let chars: Vec<char> = s.chars().collect();
        let mut budget = u32::MAX;
        assert_eq!(
            backtrack(&g.tokens, &chars, &mut budget),
            Some(table_match(&g.tokens, &chars)),
            "{p} {s}"
        );
    }
}

#[test]
fn globs() {
    let g = |p: &str, s: &str| Glob::new(p).expect("glob").matches(s);
    assert!(g(
        "registry.example.com/prod/**",
        "registry.example.com/prod/a/b:v1"
    ));
    assert!(g(
        "registry.example.com/prod/*",
        "registry.example.com/prod/app:v1"
    ));
    assert!(!g(
        "registry.example.com/prod/*",
        "registry.example.com/prod/a/b:v1"
    ));
    assert!(g(
        "docker.io/library/alpine:3.?",
        "docker.io/library/alpine:3.9"
    ));
    assert!(!g(
        "docker.io/library/alpine:3.?",
        "docker.io/library/alpine:3.20"
    ));
    assert!(g("**", "anything/at:all"));
    assert!(!g(
        "registry.example.com/prod/**",
        "registry.example.com/production/x:1"
    ));
}

#[test]
fn most_specific_rule_wins() {
    let p = policy(
        r#"
[[rule]]
name = "all"
match = "**"
require = "any"
[[rule]]
name = "prod"
match = "registry.example.com/prod/**"
[[rule]]
name = "prod-app"
match = "registry.example.com/prod/app:*"
[[rule]]
name = "exact"
match = "registry.example.com/prod/app:v1"
require = "reject"
"#,
    )
    .expect("valid");
    assert_eq!(
        rule_name(&p, "registry.example.com/prod/app:v1").as_deref(),
        Some("exact")
    );
    assert_eq!(
        rule_name(&p, "registry.example.com/prod/app:v2").as_deref(),
        Some("prod-app")
    );
    assert_eq!(
        rule_name(&p, "registry.example.com/prod/db:v2").as_deref(),
        Some("prod")
    );
    assert_eq!(rule_name(&p, "alpine").as_deref(), Some("all"));
}

/// The red team's case: under "most literal characters wins", the lax sandbox rule
/// (more literals) beat the enforced prod rule for prod/sandbox/evil.
#[test]
fn a_lax_rule_with_more_literals_does_not_beat_a_longer_written_out_path() {
    let p = policy(
        r#"
[[rule]]
name = "prod"
match = "registry.example.com/prod/**"
[[rule]]
name = "sandbox"
match = "registry.example.com/**/sandbox/**"
require = "any"
"#,
    )
    .expect("valid");
    assert_eq!(
        rule_name(&p, "registry.example.com/prod/sandbox/evil:1").as_deref(),
        Some("prod")
    );
    assert_eq!(
        rule_name(&p, "registry.example.com/dev/sandbox/x:1").as_deref(),
        Some("sandbox")
    );
}

#[test]
fn equally_specific_overlapping_rules_are_an_error() {
    let e = policy(
        r#"
[[rule]]
name = "a"
match = "registry.example.com/team/*/x:*"
[[rule]]
name = "b"
match = "registry.example.com/team/**:v1"
require = "any"
"#,
    )
    .expect_err("tie");
    assert!(
        e.to_string().contains("rules a") && e.to_string().contains("equally specific"),
        "{e}"
    );
    // Same rank but disjoint: fine.
    policy(
        r#"
[[rule]]
name = "a"
match = "registry.example.com/team/*:v1"
[[rule]]
name = "b"
match = "registry.example.com/team/*:v2"
"#,
    )
    .expect("disjoint patterns of equal rank");
}

#[test]
fn overlap_is_decided_by_the_globs() {
    let o = |a: &str, b: &str| Glob::new(a).unwrap().overlaps(&Glob::new(b).unwrap());
    assert!(o("r/**", "r/*/x"));
    assert!(o("r/*/x:*", "r/**:v1"));
    assert!(!o("r/*:v1", "r/*:v2"));
    assert!(!o("r/*", "r/a/b"), "* stays in one segment");
    assert!(o("r/?/b", "r/a/*"));
    assert!(!o("a/**", "b/**"));
    assert!(o("**", "x"));
}

#[test]
fn plain_http_trust_servers_only_on_loopback_by_parsed_host() {
    for good in [
        "https://notary.example.com",
        "https://notary.example.com:4443/base",
        "http://127.0.0.1:4443",
        "http://127.8.9.1",
        "http://localhost:4443",
        "http://[::1]:4443",
    ] {
        assert!(check_trust_server_url(good).is_ok(), "{good}");
    }
    for bad in [
        "http://127.0.0.1@notary.example.com",
        "http://127.0.0.1.nip.io",
        "http://localhost.example.com",
        "http://127.0.0.1:80@evil.example.com/",
        "http://notary.example.com",
        "ftp://127.0.0.1",
        "notary.example.com",
    ] {
        assert!(check_trust_server_url(bad).is_err(), "{bad}");
    }
}

/// `app:dev-1@sha256:EVIL`: containerd pulls EVIL, so the unsigned dev-tag rule must
/// not be the one that judges it.
#[test]
fn tag_scoped_rules_do_not_judge_a_reference_that_carries_a_digest() {
    let p = policy(
        r#"
[[rule]]
name = "app"
match = "registry.example.com/app**"
[[rule]]
name = "dev"
match = "registry.example.com/app:dev-*"
require = "any"
"#,
    )
    .expect("valid");
    assert_eq!(
        rule_name(&p, "registry.example.com/app:dev-1").as_deref(),
        Some("dev")
    );
    let evil = format!("registry.example.com/app:dev-1@sha256:{}", "e".repeat(64));
    assert_eq!(rule_name(&p, &evil).as_deref(), Some("app"));
}

#[test]
fn no_rule_means_none() {
    let p = policy("[[rule]]\nmatch = \"registry.example.com/**\"\n").expect("valid");
    assert_eq!(rule_name(&p, "alpine"), None);
}

#[test]
fn every_problem_is_reported_with_line_and_column() {
    let err = policy(
        r#"
[[rule]]
name = "a"
match = "x/**"
trust_server = "nope"
max_timestamp_age = "soon"

[[rule]]
name = "a"
match = "y/**"
roles = ["targets/releases"]
roles_required = 2
"#,
    )
    .expect_err("invalid");
    let msgs: Vec<String> = err
        .problems
        .iter()
        .map(|p| format!("{}:{} {}", p.line, p.column, p.message))
        .collect();
    assert_eq!(err.problems.len(), 4, "{msgs:?}");
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("11:16") && m.contains("no [trust_server.nope]")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("12:21") && m.contains("\"soon\" is not a duration")),
        "{msgs:?}"
    );
    assert!(msgs.iter().any(|m| m.contains("already used")), "{msgs:?}");
    assert!(
        msgs.iter().any(|m| m.contains("roles_required")),
        "{msgs:?}"
    );
    assert!(err.to_string().starts_with("policy.toml:"), "{err}");
}

#[test]
fn a_role_listed_twice_is_refused() {
    // With the default roles_required (all listed), one role would meet a quorum of two.
    let err = policy(
        r#"
[[rule]]
name = "a"
match = "x/**"
roles = ["targets/releases", "targets/releases"]
"#,
    )
    .expect_err("a role twice");
    assert!(
        err.problems
            .iter()
            .any(|p| p.message.contains("listed twice")),
        "{err}"
    );
}

#[test]
fn syntax_errors_point_at_the_spot() {
    let err = Policy::parse(Path::new("p.toml"), "[daemon]\nsocket = \n").expect_err("syntax");
    assert_eq!(
        (err.problems[0].line, err.problems[0].column),
        (2, 10),
        "{err}"
    );
    let err = Policy::parse(
        Path::new("p.toml"),
        "[[rule]]\nmatch = \"**\"\nmodee = \"audit\"\n",
    )
    .expect_err("unknown key");
    assert_eq!(err.problems[0].line, 3, "{err}");
    assert!(err.problems[0].message.contains("modee"), "{err}");
}

#[test]
fn every_unknown_key_and_wrong_value_is_reported_at_its_line_with_the_nearest_key() {
    let text = r#"colour = 1
[daemon]
sockett = "/run/x.sock"
cache_ttl = 5

[trust_server.a]
ur = "https://notary.example.com"

[[rule]]
name = "one"
match = "**"
modee = "audit"
cosign_identities = [{ issuer = "https://x", subjectt = "y" }]

[[rule]]
name = "two"
match = "docker.io/**"
tofu = "yes"
zzzzzzzz = 1

[[rule.cosign_identities]]
isuer = "https://x"
subject = "y"
"#;
    let err = Policy::parse(Path::new("p.toml"), text).expect_err("many problems");
    let got: Vec<(usize, &str)> = err
        .problems
        .iter()
        .map(|p| (p.line, p.message.as_str()))
        .collect();
    let want: [(usize, &str); 10] = [
        (1, "unknown key \"colour\" in the top level; the keys there are: daemon, trust_server, defaults, rule"),
        (3, "unknown key \"sockett\" in [daemon]; did you mean \"socket\"?"),
        (4, "[daemon]: cache_ttl: invalid type: integer `5`, expected a string"),
        (6, "[trust_server.a]: missing field `url`"),
        (7, "unknown key \"ur\" in [trust_server.a]; did you mean \"url\"?"),
        (12, "unknown key \"modee\" in rule 1; did you mean \"mode\"?"),
        (13, "unknown key \"subjectt\" in rule 1, cosign_identities entry 1; did you mean \"subject\"?"),
        (18, "rule 2: tofu: invalid type: string \"yes\", expected a boolean"),
        (19, "unknown key \"zzzzzzzz\" in rule 2; the keys there are: name, match,"),
        (22, "unknown key \"isuer\" in rule 2, cosign_identities entry 1; did you mean \"issuer\"?"),
    ];
    assert_eq!(got.len(), want.len(), "{err}");
    for ((line, message), (want_line, want_message)) in got.iter().zip(want) {
        assert_eq!(*line, want_line, "{message}");
        assert!(
            message.starts_with(want_message),
            "{message}\nwant: {want_message}"
        );
    }
    // A syntax error stops the parser: that one, alone.
    let err = Policy::parse(Path::new("p.toml"), "modee = 1\n[daemon\n").expect_err("syntax");
    assert_eq!(err.problems.len(), 1, "{err}");
    assert_eq!(
        nearest("pull.rejectd", ["pull.rejected", "pull.allowed"]),
        Some("pull.rejected")
    );
    assert_eq!(nearest("qqqq", ["socket", "mode"]), None);
}

/// Trust anchors are matched against the node's names for repositories: every other
/// spelling is renamed to it, or refused when it cannot be (it would pin nothing).
#[test]
fn anchors_are_named_as_the_node_names_repositories() {
    for (given, normal) in [
        ("docker.io/alpine", "docker.io/library/alpine"),
        ("index.docker.io/library/alpine", "docker.io/library/alpine"),
        ("Registry.Example.com/team/*", "registry.example.com/team/*"),
        (
            "registry.example.com:443/team/*",
            "registry.example.com/team/*",
        ),
        ("registry.example.com./app", "registry.example.com/app"),
        (
            "registry.example.com/team/app",
            "registry.example.com/team/app",
        ),
        ("docker.io/*", "docker.io/*"),
        ("alpine", "docker.io/library/alpine"),
        ("library/alpine", "docker.io/library/alpine"),
        ("*", "*"),
        ("Registry.example*", "registry.example*"),
    ] {
        assert_eq!(anchor_repository(given).as_deref(), Ok(normal), "{given}");
    }
    for refused in [
        "team/*",
        "registry.example.com/app:v1",
        "registry.example.com/app@sha256:0000",
        "registry_example.com/team/*",
    ] {
        assert!(anchor_repository(refused).is_err(), "{refused}");
    }
}

mod settings;
