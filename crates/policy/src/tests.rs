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

#[test]
fn signed_needs_a_trust_server() {
    let err =
        Policy::parse(Path::new("p.toml"), "[[rule]]\nmatch = \"**\"\n").expect_err("no server");
    assert!(err.to_string().contains("needs a trust_server"), "{err}");
}

#[test]
fn the_nri_gate_follows_the_watcher_unless_set_and_needs_containerds_socket() {
    let rule = "[[rule]]\nname = \"a\"\nmatch = \"**\"\nrequire = \"any\"\n";
    let with = |daemon: &str| {
        Policy::parse(
            Path::new("policy.toml"),
            &format!("[daemon]\n{daemon}\n{rule}"),
        )
    };
    let d = with("").unwrap().daemon;
    assert_eq!(d.nri_socket, Some(PathBuf::from(DEFAULT_NRI_SOCKET)));
    assert!(d.watch_images);
    let d = with("containerd_socket = \"\"").unwrap().daemon;
    assert_eq!((d.containerd_socket, d.nri_socket), (None, None));
    let d = with("nri_socket = \"\"").unwrap().daemon;
    assert!(d.containerd_socket.is_some() && d.nri_socket.is_none());
    let d = with("nri_socket = \"/run/nri.sock\"\nwatch_images = false")
        .unwrap()
        .daemon;
    assert_eq!(d.nri_socket, Some(PathBuf::from("/run/nri.sock")));
    assert!(!d.watch_images);
    let err = with("containerd_socket = \"\"\nnri_socket = \"/run/nri.sock\"")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nri_socket needs containerd_socket") && err.contains("policy.toml:3:"),
        "{err}"
    );
    // Kubernetes Events: off unless asked for; the API server only over https.
    let d = with("").unwrap().daemon;
    assert!(!d.kubernetes_events && d.kubernetes_api.is_none());
    let d = with("kubernetes_events = true\nkubernetes_api = \"https://10.0.0.1:6443\"")
        .unwrap()
        .daemon;
    assert!(d.kubernetes_events);
    assert_eq!(d.kubernetes_api.as_deref(), Some("https://10.0.0.1:6443"));
    let err = with("kubernetes_api = \"http://10.0.0.1:8080\"")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("kubernetes_api is the API server's https:// URL"),
        "{err}"
    );
}

#[test]
fn otlp_is_a_plain_grpc_address_and_anything_else_is_refused_with_the_form() {
    let with = |daemon: &str| {
        let rule = "[[rule]]\nname = \"a\"\nmatch = \"**\"\nrequire = \"any\"\n";
        Policy::parse(
            Path::new("policy.toml"),
            &format!("[daemon]\n{daemon}\n{rule}"),
        )
    };
    assert_eq!(with("").unwrap().daemon.otlp, None);
    let d = with("otlp = \"http://127.0.0.1:4317\"").unwrap().daemon;
    assert_eq!(d.otlp.as_deref(), Some("http://127.0.0.1:4317"));
    for bad in [
        "https://collector:4317",
        "127.0.0.1:4317",
        "http://",
        "http://c:4317/v1/logs",
        "http://user@c:4317",
    ] {
        let err = with(&format!("otlp = \"{bad}\"")).unwrap_err().to_string();
        assert!(
            err.contains(
                "otlp is an OpenTelemetry Collector's OTLP/gRPC address, http://HOST:PORT"
            ),
            "{bad}: {err}"
        );
    }
}

#[test]
fn cosign_rules_name_their_keys_and_say_whether_a_transparency_log_is_required() {
    let cosign = |extra: &str| {
        policy(&format!(
            "[[rule]]\nname = \"c\"\nmatch = \"**\"\nproofs = [\"cosign\"]\n{extra}"
        ))
    };
    // No signer: nothing could vouch.
    let err = cosign("cosign_tlog = false\n").unwrap_err().to_string();
    assert!(err.contains("names no signer"), "{err}");
    // Transparency-log evidence is required unless the rule says otherwise, and is
    // verified with the trusted root's log keys: refused at load without one.
    let err = cosign("cosign_keys = [\"c.pub\"]\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("give trusted_root") && err.contains("cosign_tlog = false"),
        "{err}"
    );
    cosign("cosign_keys = [\"c.pub\"]\ntrusted_root = \"trusted_root.json\"\n").unwrap();
    // Keyless: identities need the trusted root, and each a subject or a subject_regex.
    let keyless = "cosign_identities = [{ issuer = \"https://token.actions.githubusercontent.com\", subject_regex = \"https://github.com/org/.*\" }]\n";
    let err = cosign(keyless).unwrap_err().to_string();
    assert!(err.contains("Fulcio"), "{err}");
    let p = cosign(&format!("{keyless}trusted_root = \"tr.json\"\n")).unwrap();
    assert_eq!(
        p.rules[0].cosign.identities[0].subject_regex.as_deref(),
        Some("https://github.com/org/.*")
    );
    let err = cosign("cosign_identities = [{ issuer = \"i\" }]\ntrusted_root = \"t\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("subject or subject_regex"), "{err}");
    let both = "cosign_identities = [{ issuer = \"https://a\", issuer_regex = \"https://.*\", subject = \"x\" }]\n";
    let neither = "cosign_identities = [{ subject = \"x\" }]\n";
    for ids in [both, neither] {
        let err = policy(&format!("[[rule]]\nname = \"k\"\nmatch = \"r.io/**\"\nproofs = [\"cosign\"]\ntrusted_root = \"sigstore-public-good\"\n{ids}"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("issuer or issuer_regex (one of them)"),
            "{err}"
        );
    }
    let p = cosign("cosign_keys = [\"c.pub\"]\ncosign_tlog = false\n").unwrap();
    let r = &p.rules[0];
    assert_eq!(r.proofs, vec![Proof::Cosign]);
    assert_eq!(
        r.proofs_required,
        ProofsRequired::All,
        "all listed, by default"
    );
    assert_eq!(r.cosign.keys, vec![PathBuf::from("c.pub")]);
    assert!(!r.cosign.tlog && !r.cosign.check_reference);
    // A cosign-only rule needs no trust server.
    let text = "[[rule]]\nname = \"c\"\nmatch = \"**\"\nproofs = [\"cosign\"]\ncosign_keys = [\"c.pub\"]\ncosign_tlog = false\n";
    Policy::parse(Path::new("p.toml"), text).unwrap();
    // ... but one that accepts Notary too does.
    let err = Policy::parse(
        Path::new("p.toml"),
        &text.replace("[\"cosign\"]", "[\"notary-v1\", \"cosign\"]"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("needs a trust_server"), "{err}");

    let err =
        cosign("cosign_keys = [\"c.pub\"]\ncosign_tlog = false\nproofs_required = \"some\"\n")
            .unwrap_err()
            .to_string();
    assert!(err.contains("some"), "{err}");
    let err =
        policy("[[rule]]\nname = \"c\"\nmatch = \"**\"\nproofs = [\"notary-v1\", \"notary-v1\"]\n")
            .unwrap_err()
            .to_string();
    assert!(err.contains("twice"), "{err}");
    let p = cosign("cosign_keys = [\"c.pub\"]\ncosign_tlog = false\nsignature_repository = \"registry.test/sigs\"\n").unwrap();
    assert_eq!(
        p.rules[0].cosign.signature_repository.as_deref(),
        Some("registry.test/sigs")
    );
    let err = cosign("cosign_keys = [\"c.pub\"]\ncosign_tlog = false\nsignature_repository = \"Registry.test/sigs\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("signature_repository"), "{err}");
}

#[test]
fn host_glob_across_hosts_is_refused_unless_the_rule_says_so() {
    // The attack: `registry.example.com*/**` also judges
    // registry.example.com.attacker.net; a warning was not enough.
    for pattern in [
        "registry.example.com*/**",
        "*.example.com/**",
        "**/prod/**",
        "*/team/app:*",
        "registry.exam?le.com/**",
    ] {
        let e =
            policy(&format!("[[rule]]\nname = \"r\"\nmatch = \"{pattern}\"\n")).expect_err(pattern);
        assert!(
            e.to_string().contains("any_registry = true") && e.to_string().contains("attacker"),
            "{pattern}: {e}"
        );
        let p = policy(&format!(
            "[[rule]]\nname = \"r\"\nmatch = \"{pattern}\"\nany_registry = true\n"
        ))
        .expect("explicit");
        assert_eq!(p.rules.len(), 1);
    }
    // A port wildcard names one host, and the catch-all says what it is.
    policy("[[rule]]\nname = \"r\"\nmatch = \"127.0.0.1:*/demo/**\"\n").expect("port");
    policy("[[rule]]\nname = \"r\"\nmatch = \"**\"\n").expect("catch-all");
    let p = policy(
        "[[rule]]\nname = \"r\"\nmatch = \"registry.example.com*/**\"\nany_registry = true\n",
    )
    .expect("explicit");
    assert_eq!(
        rule_name(&p, "registry.example.com.attacker.net/app:1").as_deref(),
        Some("r"),
        "what any_registry = true means"
    );
}

#[test]
fn a_rule_shadowed_by_a_laxer_one_with_the_same_pattern_is_refused() {
    // What an imported trust policy with one scope in two statements did: the skip
    // statement's require = "any" came first and the signed rule never applied.
    let e = policy(
        "[[rule]]\nname = \"open\"\nmatch = \"registry.example.com/app:*\"\nrequire = \"any\"\n[[rule]]\nname = \"signed\"\nmatch = \"registry.example.com/app:*\"\n",
    )
    .expect_err("shadowed by a laxer rule");
    assert!(
        e.to_string()
            .contains("rule signed can never apply: rule open")
            && e.to_string().contains("laxer"),
        "{e}"
    );
    let e = policy(
        "[[rule]]\nname = \"watch\"\nmatch = \"registry.example.com/app:*\"\nmode = \"audit\"\n[[rule]]\nname = \"signed\"\nmatch = \"registry.example.com/app:*\"\n",
    )
    .expect_err("audit shadows enforce");
    assert!(e.to_string().contains("audit mode"), "{e}");
    // Shadowed by one as strict or stricter: loads (and policy check warns).
    let p = policy(
        "[[rule]]\nname = \"signed\"\nmatch = \"registry.example.com/app:*\"\n[[rule]]\nname = \"open\"\nmatch = \"registry.example.com/app:*\"\nrequire = \"any\"\n",
    )
    .expect("stricter first");
    assert_eq!(p.lint().len(), 1);
}

#[test]
fn a_missing_policy_file_has_no_position_and_says_which_flag_names_it() {
    let e = Policy::load(Path::new("/nonexistent/pullguard.toml")).unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("/nonexistent/pullguard.toml: cannot read the policy file")
            && text.contains("--policy FILE")
            && text.contains("--config FILE"),
        "{text}"
    );
}
