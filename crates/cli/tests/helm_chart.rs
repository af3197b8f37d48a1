//! The Helm chart (deploy/helm/pullguard), rendered by the real helm and checked by
//! kubernetes-validate against Kubernetes' own schemas (both installed by
//! scripts/lib-k8s.sh): it
//! lints, validates for the oldest and newest Kubernetes it supports, its policy passes
//! `pullguard policy check`, the plain manifests beside it are its rendering, and every
//! value that can be wrong is refused at render time with a message that says why.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

fn chart() -> PathBuf {
    repo().join("deploy/helm/pullguard")
}

/// The tools' paths from scripts/lib-k8s.sh: (helm, kubernetes-validate).
fn tools() -> (PathBuf, PathBuf) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            ". {0}/scripts/lib-tools.sh; . {0}/scripts/lib-k8s.sh; go_tools_env; k8s_tools_env; \
             printf '%s\\n%s' \"$HELM\" \"$K8S_VALIDATE\"",
            repo().display()
        ))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let helm = PathBuf::from(lines.next().unwrap());
    let validate = PathBuf::from(lines.next().unwrap());
    for p in [&helm, &validate] {
        assert!(
            p.is_file(),
            "{} is missing: run scripts/test (it installs helm and kubernetes-validate)",
            p.display()
        );
    }
    (helm, validate)
}

/// `helm template pullguard CHART -n pullguard ARGS`: Ok(manifests) or Err(stderr).
fn template(args: &[&str]) -> Result<String, String> {
    let (helm, _) = tools();
    let out = Command::new(helm)
        .args(["template", "pullguard"])
        .arg(chart())
        .args(["--namespace", "pullguard"])
        .args(args)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn docs(manifests: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(manifests)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn kind<'a>(all: &'a [Value], kind: &str) -> &'a Value {
    all.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

/// A YAML sequence of strings (a container's command).
fn strings(v: &Value) -> Vec<&str> {
    v.as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

fn policy_of(all: &[Value]) -> String {
    kind(all, "ConfigMap")["data"]["pullguard.toml"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `pullguard policy check` on the policy the chart renders.
fn check_policy(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pullguard.toml");
    std::fs::write(&file, text).unwrap();
    let (code, _, out) = common::pullguard(&["policy", "check", file.to_str().unwrap()]);
    (code, out)
}

/// `kubernetes-validate --strict` (unknown fields are errors) for Kubernetes `version`.
fn validate(manifests: &str, version: &str) {
    let (_, validate) = tools();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("manifests.yaml");
    std::fs::write(&file, manifests).unwrap();
    let out = Command::new(validate)
        .args(["--strict", "--kubernetes-version", version])
        .arg(&file)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !said.contains("ERROR"),
        "kubernetes-validate (Kubernetes {version}) refused the chart:\n{said}"
    );
    let passed = said.matches(" passed for resource ").count();
    assert_eq!(
        passed,
        docs(manifests).len(),
        "not every resource was checked:\n{said}"
    );
}

#[test]
fn the_chart_lints_and_validates_against_kubernetes_schemas() {
    let (helm, _) = tools();
    let out = Command::new(&helm)
        .args(["lint", "--strict"])
        .arg(chart())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm lint --strict:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let keyed = [
        "--set",
        "mode=enforce",
        "--set",
        "node.preset=k3s",
        "--set",
        "keys[0].path=notation/truststore/x509/ca/acme/root.crt",
        "--set",
        "keys[0].content=x",
        "--set",
        "image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ];
    for manifests in [template(&[]).unwrap(), template(&keyed).unwrap()] {
        // The newest schemas the wheel carries, and the oldest Kubernetes Chart.yaml allows.
        validate(&manifests, "1.37.0");
        validate(&manifests, "1.28.0");
    }
}

#[test]
fn the_plain_manifests_are_the_chart_rendered_with_its_defaults() {
    // Without the hooks: `kubectl apply` would run the uninstall hook at once.
    let rendered = template(&["--no-hooks"]).unwrap();
    assert!(!rendered.contains("helm.sh/hook"));
    let file = repo().join("deploy/manifests/pullguard.yaml");
    let committed = std::fs::read_to_string(&file).unwrap_or_default();
    let header = "# Rendered from deploy/helm/pullguard with its default values (namespace pullguard),\n# without the chart's uninstall hook (docs/install.md says how to uninstall without Helm):\n# helm template pullguard deploy/helm/pullguard --namespace pullguard --no-hooks\n";
    let expected = format!("{header}{rendered}");
    if std::env::var_os("PULLGUARD_UPDATE_MANIFESTS").is_some() {
        std::fs::write(&file, &expected).unwrap();
    }
    assert!(
        committed == expected,
        "{} is not the chart's rendering; regenerate it: PULLGUARD_UPDATE_MANIFESTS=1 cargo test -p cli --test helm_chart",
        file.display()
    );
}

#[test]
fn the_rendered_policy_is_valid_and_its_rules_are_the_shipped_ones() {
    for mode in ["audit", "enforce"] {
        let all = docs(&template(&["--set", &format!("mode={mode}")]).unwrap());
        let policy = policy_of(&all);
        let (code, out) = check_policy(&policy);
        assert_eq!(
            code, 0,
            "pullguard policy check on the chart's policy:\n{out}\n{policy}"
        );
        assert!(
            policy.contains(&format!("mode = \"{mode}\"")),
            "mode={mode} is not in the policy:\n{policy}"
        );
        // The rules are config/pullguard.toml's, from [defaults] on, but for the mode.
        let shipped = std::fs::read_to_string(repo().join("config/pullguard.toml")).unwrap();
        let rules = &shipped[shipped.find("[defaults]").unwrap()..];
        let ours = &policy[policy.find("[defaults]").unwrap()..];
        let neutral = |t: &str| {
            t.lines()
                .map(|l| {
                    if l.starts_with("mode = ") {
                        "mode"
                    } else {
                        l.trim_end()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
                .to_owned()
        };
        assert_eq!(
            neutral(ours),
            neutral(rules),
            "deploy/helm/pullguard/files/rules.toml has drifted from config/pullguard.toml"
        );
    }
    // A policy of the operator's own replaces the rules; [daemon] stays the chart's.
    let own = "[[rule]]\nname = \"all\"\nmatch = \"**\"\nmode = \"audit\"\nrequire = \"any\"\n";
    let all = docs(&template(&["--set-string", &format!("policy={own}")]).unwrap());
    let policy = policy_of(&all);
    assert!(policy.contains("name = \"all\"") && !policy.contains("distroless"));
    assert_eq!(check_policy(&policy).0, 0, "{policy}");
}

#[test]
fn the_node_paths_follow_the_preset_and_the_policy_names_the_mounts() {
    for (preset, socket, hosts) in [
        (
            "containerd",
            "/run/containerd/containerd.sock",
            "/etc/containerd/certs.d",
        ),
        (
            "k3s",
            "/run/k3s/containerd/containerd.sock",
            "/var/lib/rancher/k3s/agent/etc/containerd/certs.d",
        ),
        (
            "rke2",
            "/run/k3s/containerd/containerd.sock",
            "/var/lib/rancher/rke2/agent/etc/containerd/certs.d",
        ),
    ] {
        let all = docs(&template(&["--set", &format!("node.preset={preset}")]).unwrap());
        let policy = policy_of(&all);
        assert!(
            policy.contains(&format!("containerd_socket = \"{socket}\""))
                && policy.contains(&format!("registry_config_path = \"{hosts}\"")),
            "{preset}: {policy}"
        );
        let ds = kind(&all, "DaemonSet");
        let spec = &ds["spec"]["template"]["spec"];
        let host_paths: Vec<&str> = spec["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|v| v["hostPath"]["path"].as_str())
            .collect();
        let socket_dir = Path::new(socket).parent().unwrap().to_str().unwrap();
        let mut expected = vec![
            "/run/pullguard",
            "/var/lib/pullguard",
            "/var/log/pullguard",
            socket_dir,
            "/var/run/nri",
            "/opt/containerd/image-verifier",
            hosts,
        ];
        expected.sort_unstable();
        let mut got = host_paths.clone();
        got.sort_unstable();
        assert_eq!(got, expected, "{preset}: the host paths mounted");
        // Each mount is where the policy looks for it: the same path inside and out.
        let daemon = &spec["containers"][0];
        let mounts: Vec<&str> = daemon["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|m| m["mountPath"].as_str().unwrap())
            .collect();
        for path in expected {
            assert!(
                mounts.contains(&path),
                "{preset}: {path} is not mounted: {mounts:?}"
            );
        }
    }
}

/// Kubernetes refuses a pod that mounts one path twice: settings that name one host
/// directory (NRI's socket beside containerd's, events beside the state) share a volume.
#[test]
fn settings_that_name_one_directory_share_one_volume() {
    let all = docs(
        &template(&[
            "--set",
            "node.nriSocket=/run/containerd/nri.sock",
            "--set",
            "node.eventsDir=/var/lib/pullguard",
        ])
        .unwrap(),
    );
    let spec = &kind(&all, "DaemonSet")["spec"]["template"]["spec"];
    let each = |list: &Value, key: &str| -> Vec<String> {
        list.as_sequence()
            .unwrap()
            .iter()
            .map(|m| m[key].as_str().unwrap().to_owned())
            .collect()
    };
    let assert_unique = |what: &str, items: Vec<String>| {
        let mut unique = items.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), items.len(), "{what}: {items:?}");
    };
    for container in ["containers", "initContainers"] {
        assert_unique(
            container,
            each(&spec[container][0]["volumeMounts"], "mountPath"),
        );
    }
    assert_unique("volumes", each(&spec["volumes"], "name"));
    let daemon = each(&spec["containers"][0]["volumeMounts"], "mountPath");
    assert!(daemon.iter().any(|p| p == "/run/containerd"));
    assert!(daemon.iter().any(|p| p == "/var/lib/pullguard"));
    let policy = policy_of(&all);
    assert!(
        policy.contains("nri_socket = \"/run/containerd/nri.sock\""),
        "{policy}"
    );
    assert_eq!(check_policy(&policy).0, 0, "{policy}");
}

#[test]
fn the_pods_are_unprivileged_and_upgrades_hand_over_the_socket() {
    let all = docs(&template(&[]).unwrap());
    let ds = kind(&all, "DaemonSet");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["automountServiceAccountToken"], Value::Bool(false));
    assert!(spec["hostNetwork"].is_null() && spec["hostPID"].is_null());
    let containers: Vec<&Value> = spec["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .chain(spec["initContainers"].as_sequence().unwrap())
        .collect();
    assert_eq!(containers.len(), 2);
    for c in containers {
        let sc = &c["securityContext"];
        assert!(sc["privileged"].is_null() || sc["privileged"] == Value::Bool(false));
        assert_eq!(sc["allowPrivilegeEscalation"], Value::Bool(false), "{c:?}");
        assert_eq!(sc["readOnlyRootFilesystem"], Value::Bool(true), "{c:?}");
        assert_eq!(sc["capabilities"]["drop"][0].as_str(), Some("ALL"), "{c:?}");
        assert!(sc["capabilities"]["add"].is_null(), "{c:?}");
    }
    // Old and new pod overlap, and the new daemon takes the socket over: stopping the
    // old one first would leave the verifier no daemon to ask about the new image.
    let rolling = &ds["spec"]["updateStrategy"]["rollingUpdate"];
    assert_eq!(rolling["maxSurge"], Value::from(1));
    assert_eq!(rolling["maxUnavailable"], Value::from(0));
    let command: Vec<&str> = strings(&spec["containers"][0]["command"]);
    assert!(command.contains(&"--take-over"), "{command:?}");
    let init: Vec<&str> = strings(&spec["initContainers"][0]["command"]);
    assert_eq!(
        init,
        [
            "/usr/bin/pullguard",
            "node",
            "install-verifier",
            "--bin-dir",
            "/opt/containerd/image-verifier/bin"
        ]
    );
}

#[test]
fn the_verifier_can_be_removed_before_an_uninstall_or_left_alone() {
    let init = |value: &str| {
        let all = docs(&template(&["--set", &format!("node.verifier={value}")]).unwrap());
        let spec = kind(&all, "DaemonSet")["spec"]["template"]["spec"].clone();
        let command: Vec<String> = spec["initContainers"][0]["command"]
            .as_sequence()
            .map(|c| c.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        let mounted = spec["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|v| v["name"].as_str() == Some("verifier-dir"));
        (command, mounted)
    };
    let (remove, mounted) = init("remove");
    assert_eq!(
        remove[..3],
        ["/usr/bin/pullguard", "node", "remove-verifier"]
    );
    assert!(mounted);
    assert_eq!(init("none"), (Vec::new(), false));
}

#[test]
fn pod_annotations_reach_the_pods_only_when_asked_for() {
    let annotations = |args: &[&str]| {
        let all = docs(&template(args).unwrap());
        kind(&all, "DaemonSet")["spec"]["template"]["metadata"]["annotations"].clone()
    };
    assert!(annotations(&[]).is_null());
    let set = annotations(&[
        "--set-json",
        r#"podAnnotations={"pullguard.example/tolerate-missing-plugins":"true"}"#,
    ]);
    assert_eq!(
        set["pullguard.example/tolerate-missing-plugins"].as_str(),
        Some("true")
    );
}

#[test]
fn kubernetes_events_get_a_token_and_the_right_to_create_events_only() {
    let none = docs(&template(&[]).unwrap());
    assert!(!none.iter().any(|d| d["kind"]
        .as_str()
        .is_some_and(|k| k.starts_with("ClusterRole"))));
    let all = docs(&template(&["--set", "kubernetesEvents=true"]).unwrap());
    let role = kind(&all, "ClusterRole");
    let rules = role["rules"].as_sequence().unwrap();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(rules[0]["apiGroups"][0].as_str(), Some("events.k8s.io"));
    assert_eq!(rules[0]["resources"][0].as_str(), Some("events"));
    assert_eq!(rules[0]["verbs"].as_sequence().unwrap().len(), 1);
    assert_eq!(rules[0]["verbs"][0].as_str(), Some("create"));
    let binding = kind(&all, "ClusterRoleBinding");
    assert_eq!(
        binding["subjects"][0]["namespace"].as_str(),
        Some("pullguard")
    );
    let spec = &kind(&all, "DaemonSet")["spec"]["template"]["spec"];
    assert_eq!(spec["automountServiceAccountToken"], Value::Bool(true));
    let policy = policy_of(&all);
    assert!(policy.contains("kubernetes_events = true"), "{policy}");
    assert_eq!(check_policy(&policy).0, 0, "{policy}");
}

#[test]
fn an_otlp_collector_is_named_in_the_policy_only_when_asked_for() {
    assert!(!policy_of(&docs(&template(&[]).unwrap())).contains("otlp"));
    let policy = policy_of(&docs(
        &template(&["--set", "otlp=http://otel.observability.svc:4317"]).unwrap(),
    ));
    assert!(
        policy.contains("otlp = \"http://otel.observability.svc:4317\""),
        "{policy}"
    );
    assert_eq!(check_policy(&policy).0, 0, "{policy}");
}

#[test]
fn pullguards_own_image_gets_a_rule_for_its_tags_and_digests_when_its_signers_are_named() {
    let identity = r#"image.signers.cosignIdentities=[{"subject":"https://github.com/acme/pullguard/.github/workflows/release.yml@refs/tags/v1","issuer":"https://token.actions.githubusercontent.com"}]"#;
    let all = docs(
        &template(&[
            "--set",
            "image.repository=ghcr.io/acme/pullguard",
            "--set-json",
            identity,
        ])
        .unwrap(),
    );
    let policy = policy_of(&all);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pullguard.toml");
    std::fs::write(&file, &policy).unwrap();
    let file = file.to_str().unwrap();
    let (code, _, out) = common::pullguard(&["policy", "check", file]);
    assert_eq!(code, 0, "{out}\n{policy}");
    let digest = format!("ghcr.io/acme/pullguard@sha256:{}", "ab".repeat(32));
    for (image, rule) in [
        ("ghcr.io/acme/pullguard:0.1.0", "pullguard-image"),
        (digest.as_str(), "pullguard-image-by-digest"),
        // A look-alike repository is not pullguard's.
        ("ghcr.io/acme/pullguard-evil:1", "everything-else"),
        ("ghcr.io/acme/pullguard/x:1", "everything-else"),
    ] {
        let (_, json, out) =
            common::pullguard(&["policy", "explain", image, "--policy", file, "--json"]);
        assert_eq!(json["rule"].as_str(), Some(rule), "{image}: {out}");
    }
    // Without signers, no such rule.
    assert!(!policy_of(&docs(&template(&[]).unwrap())).contains("pullguard-image"));
    // A repository without its registry host cannot be matched as written.
    let err = template(&[
        "--set",
        "image.repository=acme/pullguard",
        "--set-json",
        identity,
    ])
    .unwrap_err();
    assert!(err.contains("write its registry host too"), "{err}");
}

#[test]
fn uninstall_removes_the_verifier_on_every_node_first_with_rights_for_that_only() {
    let all = docs(&template(&[]).unwrap());
    let job = all
        .iter()
        .find(|d| d["kind"].as_str() == Some("Job"))
        .expect("the uninstall hook Job");
    assert_eq!(
        job["metadata"]["annotations"]["helm.sh/hook"].as_str(),
        Some("pre-delete")
    );
    let command: Vec<&str> = strings(&job["spec"]["template"]["spec"]["containers"][0]["command"]);
    assert_eq!(
        command[..3],
        ["/usr/bin/pullguard", "node", "remove-verifier-on-nodes"]
    );
    let bin = command.iter().position(|a| *a == "--bin-dir").unwrap();
    assert_eq!(command[bin + 1], "/opt/containerd/image-verifier/bin");
    let sel = command.iter().position(|a| *a == "--selector").unwrap();
    assert_eq!(
        command[sel + 1],
        "app.kubernetes.io/name=pullguard,app.kubernetes.io/instance=pullguard"
    );
    // The rights: list pods, create/get/delete Jobs, in the namespace, nothing else.
    let role = kind(&all, "Role");
    assert_eq!(
        role["metadata"]["annotations"]["helm.sh/hook"].as_str(),
        Some("pre-delete")
    );
    let rules: Vec<String> = role["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| serde_yaml_ng::to_string(r).unwrap())
        .collect();
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert!(
        rules[0].contains("pods") && rules[0].contains("- list") && !rules[0].contains("create")
    );
    assert!(
        rules[1].contains("jobs") && rules[1].contains("- create") && rules[1].contains("- delete")
    );
    // No hook where the chart does not install the verifier.
    for value in ["remove", "none"] {
        let all = docs(&template(&["--set", &format!("node.verifier={value}")]).unwrap());
        assert!(
            !all.iter().any(|d| d["kind"].as_str() == Some("Job")),
            "{value}"
        );
    }
}

#[test]
fn keys_become_files_at_their_paths_in_the_keys_directory() {
    let all = docs(
        &template(&[
            "--set",
            "keys[0].path=team.pub",
            "--set-string",
            "keys[0].content=PEM",
            "--set",
            "keys[1].path=notation/truststore/x509/ca/acme/root.crt",
            "--set-string",
            "keys[1].content=CERT",
        ])
        .unwrap(),
    );
    let secret = kind(&all, "Secret");
    assert_eq!(secret["data"]["k0"].as_str(), Some("UEVN"));
    assert_eq!(secret["data"]["k1"].as_str(), Some("Q0VSVA=="));
    let ds = kind(&all, "DaemonSet");
    let keys = ds["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"].as_str() == Some("keys"))
        .unwrap();
    let items = keys["secret"]["items"].as_sequence().unwrap();
    assert_eq!(items[1]["key"].as_str(), Some("k1"));
    assert_eq!(
        items[1]["path"].as_str(),
        Some("notation/truststore/x509/ca/acme/root.crt")
    );
}

#[test]
fn values_that_would_break_a_node_are_refused_at_render_time() {
    let cases: [(&[&str], &str); 6] = [
        (
            &["--set", "node.verifier=delete"],
            "use install, remove or none",
        ),
        (
            &["--set-string", "policy=[daemon]\nsocket = \"/tmp/x\"\n"],
            "leave [daemon] out",
        ),
        (&["--set", "mode=permissive"], "use audit or enforce"),
        (
            &["--set", "node.preset=microk8s"],
            "use containerd, k3s or rke2",
        ),
        (
            &[
                "--set",
                "keys[0].path=../../etc/shadow",
                "--set",
                "keys[0].content=x",
            ],
            "a relative path inside the keys directory",
        ),
        (
            &[
                "--set",
                "keys[0].path=/etc/shadow",
                "--set",
                "keys[0].content=x",
            ],
            "a relative path inside the keys directory",
        ),
    ];
    for (args, said) in cases {
        let err = template(args).expect_err(&format!("rendered with {args:?}"));
        assert!(err.contains(said), "{args:?}: {err}");
    }
}
