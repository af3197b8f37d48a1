//! Kubernetes Events for refused containers, where cluster operators look
//! (`kubectl describe pod`, `kubectl get events`): `[daemon] kubernetes_events`.
//!
//! Each `container.refused` (and `container.audited`) event of the NRI gate becomes an
//! `events.k8s.io/v1` Event on its Pod, posted with the pod's service account (token and
//! CA from the standard mount, the token re-read for each post: the kubelet rotates it).
//! Like the other sinks it reads the broadcast channel: a slow or unreachable API server
//! holds up no verdict, and the events file stays the record. A post that fails is
//! logged, shown in `pullguard status`, and not retried.

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use crate::engine::Engine;

/// The API allows 1 kB of note.
const MAX_NOTE: usize = 1024;
/// What the Events name as their source.
const CONTROLLER: &str = "pullguard.dev/pullguardd";

/// The Event for one line of the events file, if it is about a pod's container.
pub fn event_for(line: &str, node: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(line).ok()?;
    let (reason, kind) = match v["event"].as_str()? {
        "container.refused" => ("ImageRefused", "Warning"),
        "container.audited" => ("ImageAudited", "Normal"),
        _ => return None,
    };
    let namespace = v["pod_namespace"].as_str().filter(|s| !s.is_empty())?;
    let pod = v["pod"].as_str().filter(|s| !s.is_empty())?;
    let image = v["image"].as_str().unwrap_or("?");
    let rule = v["rule"].as_str().unwrap_or("-");
    let mut note = format!(
        "pullguard {} container {:?} (image {image}): {} [{}] (rule {rule}, event {})",
        if reason == "ImageRefused" {
            "refused"
        } else {
            "would refuse (audit)"
        },
        v["container"].as_str().unwrap_or("?"),
        v["message"].as_str().unwrap_or(""),
        v["reason"].as_str().unwrap_or("?"),
        v["event_id"].as_str().unwrap_or("?"),
    );
    if let Some(remedy) = v["reason"]
        .as_str()
        .and_then(api::codes::ReasonCode::parse)
        .map(api::codes::ReasonCode::remedy)
        .filter(|r| !r.is_empty())
    {
        note.push_str("; to fix: ");
        note.push_str(remedy);
    }
    let mut regarding =
        json!({"apiVersion": "v1", "kind": "Pod", "namespace": namespace, "name": pod});
    if let Some(uid) = v["pod_uid"].as_str().filter(|s| !s.is_empty()) {
        regarding["uid"] = json!(uid);
    }
    Some(json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"generateName": format!("{}.pullguard-", pod.chars().take(200).collect::<String>()), "namespace": namespace},
        "eventTime": micro_time(v["time"].as_str().unwrap_or_default()),
        "reportingController": CONTROLLER,
        "reportingInstance": bytes_at_most(node, 128),
        "action": "CreateContainer",
        "reason": reason,
        "type": kind,
        "regarding": regarding,
        "note": bytes_at_most(&note, MAX_NOTE),
    }))
}

/// `text` cleaned of control characters and cut to `max` bytes (the API counts bytes),
/// at a character boundary, marked with `…`.
fn bytes_at_most(text: &str, max: usize) -> String {
    let mut out = api::codes::text::capped(text, max);
    if out.len() > max {
        let mut end = max - '…'.len_utf8();
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push('…');
    }
    out
}

/// The API's MicroTime: RFC 3339 with six fractional digits.
fn micro_time(t: &str) -> String {
    let (secs, frac) = t
        .trim_end_matches('Z')
        .split_once('.')
        .unwrap_or((t.trim_end_matches('Z'), ""));
    let digits: String = frac
        .chars()
        .take_while(char::is_ascii_digit)
        .take(6)
        .collect();
    format!("{secs}.{digits:0<6}Z")
}

/// What `pullguard status` says of the sink.
/// Starts the sink; says why not (as a warning and in status) when it cannot run.
pub fn spawn(engine: Arc<Engine>, api: Option<String>) {
    let client =
        match crate::kube::Client::new(api.as_deref(), Path::new(crate::kube::SERVICE_ACCOUNT)) {
            Ok(c) => c,
            Err(why) => {
                tracing::warn!("kubernetes_events is on, but no Events can be posted: {why}");
                engine.kube_events_state.set(format!("off: {why}"));
                return;
            }
        };
    engine
        .kube_events_state
        .set(format!("posting to {}", client.base()));
    let node = std::env::var("NODE_NAME").unwrap_or_else(|_| crate::events::hostname());
    let mut rx = engine.events.subscribe();
    tokio::spawn(async move {
        loop {
            let line = match rx.recv().await {
                Ok(line) => line,
                Err(RecvError::Lagged(n)) => {
                    crate::sinks::report_drops(&engine, n, "kubernetes events").await;
                    continue;
                }
                Err(RecvError::Closed) => break,
            };
            let Some(event) = event_for(&line, &node) else {
                continue;
            };
            let ns = event["metadata"]["namespace"].as_str().unwrap_or_default();
            let path = format!("/apis/events.k8s.io/v1/namespaces/{ns}/events");
            if let Err(e) = client.post(&path, &event).await {
                tracing::warn!("cannot post a Kubernetes Event: {e}");
                engine
                    .kube_events_state
                    .set(format!("posting to {}; last failure: {e}", client.base()));
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_container_becomes_a_warning_on_its_pod() {
        let line = r#"{"event":"container.refused","time":"2026-12-06T05:00:00.123456789Z","message":"no signature","host":"n","policy_generation":2,"event_id":"e-1","image":"r.example/app:1","rule":"team","reason":"no_signature","pod":"web-1","pod_namespace":"shop","pod_uid":"u-1","container":"app"}"#;
        let e = event_for(line, "node-a").unwrap();
        assert_eq!(e["reason"], "ImageRefused");
        assert_eq!(e["type"], "Warning");
        assert_eq!(e["metadata"]["namespace"], "shop");
        assert_eq!(e["regarding"]["name"], "web-1");
        assert_eq!(e["regarding"]["uid"], "u-1");
        assert_eq!(e["eventTime"], "2026-12-06T05:00:00.123456Z");
        assert_eq!(e["reportingInstance"], "node-a");
        let note = e["note"].as_str().unwrap();
        assert!(
            note.contains("rule team") && note.contains("no_signature") && note.contains("to fix:"),
            "{note}"
        );
    }

    #[test]
    fn only_container_events_with_a_pod_become_kubernetes_events() {
        for line in [
            r#"{"event":"pull.rejected","pod":"p","pod_namespace":"n"}"#,
            r#"{"event":"container.refused","pod":"","pod_namespace":"n"}"#,
            r#"{"event":"container.refused","pod":"p"}"#,
            "not json",
        ] {
            assert!(event_for(line, "n").is_none(), "{line}");
        }
    }

    #[test]
    fn a_long_message_is_cut_to_what_the_api_takes() {
        let message = "x".repeat(10_000);
        let line = format!(
            r#"{{"event":"container.refused","time":"2026-12-06T05:00:00Z","message":"{message}","pod":"p","pod_namespace":"n"}}"#
        );
        let e = event_for(&line, "n").unwrap();
        let note = e["note"].as_str().unwrap();
        assert!(
            note.len() <= MAX_NOTE && note.ends_with('…'),
            "{} bytes",
            note.len()
        );
        // Multi-byte characters are cut whole.
        assert!(bytes_at_most(&"é".repeat(2_000), 1024).len() <= 1024);
        assert_eq!(e["eventTime"], "2026-12-06T05:00:00.000000Z");
    }
}
