//! `pullguard node remove-verifier-on-nodes`: the Helm chart's pre-delete hook. A
//! verifier left in containerd's directory with no pullguardd to ask refuses every pull
//! on its node, so before the DaemonSet goes, one Job per node where it runs takes the
//! verifier out (`pullguard node remove-verifier`, pinned to the node by `nodeName`), and
//! the uninstall waits for all of them. A node where that fails fails the uninstall and
//! is named: the operator decides, rather than finding a node that pulls nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::exit::{fail, Exit};

/// More nodes than any cluster runs: the list is bounded all the same.
const MAX_NODES: usize = 5000;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The DaemonSet's namespace (the Jobs are made there).
    #[arg(long)]
    namespace: String,
    /// Label selector of the DaemonSet's pods: their nodes get a Job.
    #[arg(long)]
    selector: String,
    /// The image the Jobs run (pullguard's, present on every node already).
    #[arg(long)]
    image: String,
    /// The Jobs' image pull policy.
    #[arg(long, default_value = "IfNotPresent")]
    pull_policy: String,
    /// containerd's verifier directory on the nodes.
    #[arg(long, value_name = "DIR")]
    bin_dir: PathBuf,
    /// Run the Jobs in the host's network namespace (as the DaemonSet does).
    #[arg(long)]
    host_network: bool,
    /// The API server's URL (default: the in-cluster address).
    #[arg(long, value_name = "URL")]
    api: Option<String>,
    /// How long to wait for every node, in seconds.
    #[arg(long, default_value_t = 180)]
    timeout: u64,
}

pub fn run(args: &Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(Exit::Usage, false, "runtime", &format!("cannot start: {e}")),
    };
    let client = match daemon::kube::Client::new(
        args.api.as_deref(),
        Path::new(daemon::kube::SERVICE_ACCOUNT),
    ) {
        Ok(c) => c,
        Err(e) => return fail(Exit::Unreachable, false, "kubernetes_api", &e),
    };
    match runtime.block_on(fan_out(&client, args)) {
        Ok(report) => {
            let failed = report.iter().filter(|(_, r)| r.is_err()).count();
            for (node, result) in &report {
                match result {
                    Ok(()) => println!("{node}: verifier removed"),
                    Err(e) => println!("{node}: NOT removed: {e}"),
                }
            }
            if failed == 0 {
                println!("pullguard-verifier removed on {} node(s)", report.len());
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "pullguard: the verifier is still on {failed} node(s): those nodes refuse every pull once pullguardd is gone; remove {} there by hand, then uninstall again",
                    args.bin_dir.join(crate::node::VERIFIER).display()
                );
                Exit::Refused.into()
            }
        }
        Err(e) => fail(Exit::Unreachable, false, "kubernetes_api", &e),
    }
}

type Report = Vec<(String, Result<(), String>)>;

async fn fan_out(client: &daemon::kube::Client, args: &Args) -> Result<Report, String> {
    let ns = &args.namespace;
    let pods = client
        .get(&format!(
            "/api/v1/namespaces/{ns}/pods?labelSelector={}",
            encode(&args.selector)
        ))
        .await?;
    let nodes: BTreeSet<String> = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["spec"]["nodeName"].as_str())
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .take(MAX_NODES)
        .collect();
    let mut jobs = Vec::new();
    let mut report = Report::new();
    for node in &nodes {
        match client
            .post(
                &format!("/apis/batch/v1/namespaces/{ns}/jobs"),
                &job(node, args),
            )
            .await
        {
            Ok(made) => match made["metadata"]["name"].as_str() {
                Some(name) => jobs.push((node.clone(), name.to_owned())),
                None => report.push((
                    node.clone(),
                    Err("the API made a Job without a name".into()),
                )),
            },
            Err(e) => report.push((node.clone(), Err(e))),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut pending = jobs;
    while !pending.is_empty() {
        let mut still = Vec::new();
        for (node, name) in pending {
            let path = format!("/apis/batch/v1/namespaces/{ns}/jobs/{name}");
            let state = client.get(&path).await.map(|j| outcome(&j));
            match state {
                Ok(Some(result)) => {
                    if result.is_ok() {
                        let _ = client
                            .delete(&format!("{path}?propagationPolicy=Background"))
                            .await;
                    }
                    report.push((node, result.map_err(|why| format!("Job {name}: {why}"))));
                }
                Ok(None) if Instant::now() < deadline => still.push((node, name)),
                Ok(None) => report.push((
                    node,
                    Err(format!("Job {name} did not finish in {} s", args.timeout)),
                )),
                Err(e) => report.push((node, Err(e))),
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    report.sort();
    Ok(report)
}

/// A Job's end: `Some(Ok)` succeeded, `Some(Err)` failed, `None` still running.
fn outcome(job: &Value) -> Option<Result<(), String>> {
    if job["status"]["succeeded"].as_u64().unwrap_or(0) > 0 {
        return Some(Ok(()));
    }
    job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Failed" && c["status"] == "True")
        .map(|c| {
            Err(format!(
                "failed: {}",
                c["message"].as_str().unwrap_or("no message")
            ))
        })
}

/// The Job that runs `pullguard node remove-verifier` on `node`.
fn job(node: &str, args: &Args) -> Value {
    let dir = args.bin_dir.display().to_string();
    let parent = args
        .bin_dir
        .parent()
        .map_or_else(|| "/".to_owned(), |p| p.display().to_string());
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "generateName": "pullguard-remove-verifier-",
            "namespace": args.namespace,
            "labels": {"app.kubernetes.io/name": "pullguard", "app.kubernetes.io/component": "remove-verifier"},
        },
        "spec": {
            "backoffLimit": 2,
            "ttlSecondsAfterFinished": 600,
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "pullguard", "app.kubernetes.io/component": "remove-verifier"}},
                "spec": {
                    "nodeName": node,
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": false,
                    "hostNetwork": args.host_network,
                    "priorityClassName": "system-node-critical",
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [{
                        "name": "remove-verifier",
                        "image": args.image,
                        "imagePullPolicy": args.pull_policy,
                        "command": ["/usr/bin/pullguard", "node", "remove-verifier", "--bin-dir", dir],
                        "securityContext": {
                            "runAsUser": 0,
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": [{"name": "verifier-dir", "mountPath": parent}],
                    }],
                    "volumes": [{"name": "verifier-dir", "hostPath": {"path": parent, "type": "DirectoryOrCreate"}}],
                },
            },
        },
    })
}

/// Percent-encoding for a label selector in a query string.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_pinned_to_its_node_and_mounts_only_the_verifier_directory_parent() {
        let args = Args {
            namespace: "pg".into(),
            selector: "app=x".into(),
            image: "r.example/pullguard:1".into(),
            pull_policy: "Never".into(),
            bin_dir: PathBuf::from("/opt/containerd/image-verifier/bin"),
            host_network: true,
            api: None,
            timeout: 1,
        };
        let j = job("node-a", &args);
        let spec = &j["spec"]["template"]["spec"];
        assert_eq!(spec["nodeName"], "node-a");
        assert_eq!(spec["hostNetwork"], true);
        assert_eq!(
            spec["volumes"][0]["hostPath"]["path"],
            "/opt/containerd/image-verifier"
        );
        assert_eq!(
            spec["containers"][0]["command"][4],
            "/opt/containerd/image-verifier/bin"
        );
        assert_eq!(
            spec["containers"][0]["securityContext"]["capabilities"]["drop"][0],
            "ALL"
        );
    }

    #[test]
    fn outcomes_and_selector_encoding() {
        assert_eq!(outcome(&json!({"status": {"succeeded": 1}})), Some(Ok(())));
        assert!(outcome(&json!({"status": {"active": 1}})).is_none());
        let failed = json!({"status": {"conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]}});
        assert!(matches!(outcome(&failed), Some(Err(e)) if e.contains("BackoffLimitExceeded")));
        assert_eq!(
            encode("app.kubernetes.io/name=pullguard,x=y"),
            "app.kubernetes.io%2Fname%3Dpullguard%2Cx%3Dy"
        );
    }
}
