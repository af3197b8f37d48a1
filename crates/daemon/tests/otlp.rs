//! OTLP export to a real OpenTelemetry Collector (tests/otelcol/peer: the collector's own
//! OTLP gRPC receiver and its file exporter): every event arrives with the JSONL fields,
//! and a collector that is down — across a pullguardd restart and a rotation of the
//! events file — loses none.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod harness;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::{eventually, free_port, verify, Daemon, World};
use serde_json::Value;

struct Collector {
    child: Child,
    out: PathBuf,
}

impl Collector {
    /// A collector on 127.0.0.1:`port` writing what it receives to `dir/NAME.json`.
    fn start(dir: &Path, name: &str, port: u16) -> Collector {
        let out = dir.join(format!("{name}.json"));
        let config = dir.join(format!("{name}.yaml"));
        std::fs::write(
            &config,
            format!(
                "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{port}\n\
                 exporters:\n  file:\n    path: {}\n    flush_interval: 100ms\n\
                 service:\n  telemetry:\n    metrics:\n      level: none\n  pipelines:\n    logs:\n      receivers: [otlp]\n      exporters: [file]\n",
                out.display()
            ),
        )
        .unwrap();
        let child = Command::new(test_support::differential::peer("OTELCOL_PEER"))
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap())
            .spawn()
            .expect("the collector peer");
        // Killed and waited for by Drop, also when it never listens.
        let collector = Collector { child, out };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return collector;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the collector did not listen on {port}: {}",
            std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
        );
    }

    /// SIGTERM (the file exporter flushes), and wait.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }

    /// Every log record received, as `event_id` → its attributes as JSON values.
    fn records(&self) -> Vec<BTreeMap<String, Value>> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let mut out = Vec::new();
        // A last line without its newline is still being written.
        let whole = text.rsplit_once('\n').map_or("", |(done, _)| done);
        for line in whole.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).expect("the file exporter writes JSON");
            for rl in v["resourceLogs"].as_array().into_iter().flatten() {
                assert_eq!(
                    attr(&rl["resource"]["attributes"], "service.name"),
                    Some(Value::from("pullguardd"))
                );
                for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                    for r in sl["logRecords"].as_array().into_iter().flatten() {
                        let mut m = BTreeMap::new();
                        for a in r["attributes"].as_array().into_iter().flatten() {
                            m.insert(a["key"].as_str().unwrap().to_owned(), plain(&a["value"]));
                        }
                        m.insert("_event_name".into(), r["eventName"].clone());
                        m.insert("_body".into(), plain(&r["body"]));
                        out.push(m);
                    }
                }
            }
        }
        out
    }

    fn ids(&self) -> Vec<String> {
        self.records()
            .iter()
            .map(|r| r["event_id"].as_str().unwrap().to_owned())
            .collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn attr(list: &Value, key: &str) -> Option<Value> {
    list.as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| plain(&a["value"]))
}

/// An OTLP JSON AnyValue as the plain JSON value it carries (OTLP/JSON writes 64-bit
/// integers as strings).
fn plain(v: &Value) -> Value {
    if let Some(s) = v.get("stringValue") {
        s.clone()
    } else if let Some(b) = v.get("boolValue") {
        b.clone()
    } else if let Some(i) = v.get("intValue") {
        Value::from(i.as_str().and_then(|s| s.parse::<i64>().ok()).unwrap_or(0))
    } else if let Some(a) = v.get("arrayValue") {
        Value::Array(
            a["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(plain)
                .collect(),
        )
    } else if let Some(kv) = v.get("kvlistValue") {
        Value::Object(
            kv["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| (a["key"].as_str().unwrap().to_owned(), plain(&a["value"])))
                .collect(),
        )
    } else {
        Value::Null
    }
}

fn rules() -> &'static str {
    "[[rule]]\nname = \"blocked\"\nmatch = \"registry.test/blocked/**\"\nrequire = \"reject\"\n"
}

/// Every event ID of the events file and its rotated copies.
fn file_ids(world: &World, keep: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for n in (0..=keep).rev() {
        let p = if n == 0 {
            world.events.clone()
        } else {
            PathBuf::from(format!("{}.{n}", world.events.display()))
        };
        for line in std::fs::read_to_string(p).unwrap_or_default().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            ids.push(v["event_id"].as_str().unwrap().to_owned());
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn every_event_reaches_a_real_collector_with_the_fields_of_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let collector = Collector::start(tmp.path(), "c", port);
    let world = World::new();
    world.write_config(&format!(
        "{}{}",
        world.daemon_section(&format!("otlp = \"http://127.0.0.1:{port}\"")),
        rules()
    ));
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    for i in 0..3 {
        assert!(
            !verify(&mut c, &format!("registry.test/blocked/app:{i}"), "")
                .await
                .allowed
        );
    }
    let want = file_ids(&world, 0);
    arrives(&collector, &want).await;
    // A rejection's record carries each field of its JSON line, under the same name.
    let line = world.events_of("pull.rejected").remove(0);
    let record = collector
        .records()
        .into_iter()
        .find(|r| r["event_id"] == line["event_id"])
        .unwrap();
    for (k, v) in line.as_object().unwrap() {
        if !v.is_null() {
            assert_eq!(&record[k], v, "field {k}");
        }
    }
    assert_eq!(record["_event_name"], "pull.rejected");
    assert_eq!(record["_body"], line["message"]);
    let s = daemon.status().await;
    assert!(
        s.otlp
            .starts_with(&format!("exporting to http://127.0.0.1:{port}")),
        "{s:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_collector_down_across_a_restart_and_a_rotation_loses_no_event() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let world = World::new();
    // Small files, so that the outage spans rotations of the events file.
    world.write_config(&format!(
        "{}{}",
        world.daemon_section(&format!(
            "otlp = \"http://127.0.0.1:{port}\"\nevents_max_bytes = 2048\nevents_keep = 20"
        )),
        rules()
    ));
    // No collector yet: verdicts do not wait for it, and status says it is failing.
    let mut daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    for i in 0..6 {
        assert!(
            !verify(&mut c, &format!("registry.test/blocked/a:{i}"), "")
                .await
                .allowed
        );
    }
    let failing = eventually(30, || async {
        let s = daemon.status().await.otlp;
        s.contains("failing since").then_some(s)
    })
    .await;
    assert!(
        failing.is_some_and(|s| s.contains("resent from the events file")),
        "status says the export is failing and what happens to the events"
    );
    let mut first = Collector::start(tmp.path(), "first", port);
    let sent = file_ids(&world, 20);
    // What waited arrives once the collector comes.
    arrives(&first, &sent).await;
    first.stop();
    // Down again; more events, pullguardd restarts, the file rotates; then a new one.
    for i in 0..6 {
        verify(&mut c, &format!("registry.test/blocked/b:{i}"), "").await;
    }
    daemon.stop();
    let daemon = Daemon::start(&world);
    let mut c = daemon.client().await;
    for i in 0..6 {
        verify(&mut c, &format!("registry.test/blocked/c:{i}"), "").await;
    }
    assert!(
        PathBuf::from(format!("{}.2", world.events.display())).exists(),
        "the events file rotated during the outage"
    );
    let second = Collector::start(tmp.path(), "second", port);
    let all = file_ids(&world, 20);
    let after: Vec<String> = all[sent.len()..].to_vec();
    // Every event since the first collector stopped, at the second, in order, once.
    arrives(&second, &after).await;
    drop(daemon);
}

/// Waits until the collector has received exactly `want`, in order.
async fn arrives(collector: &Collector, want: &[String]) {
    eventually(30, || async { (collector.ids() == want).then_some(()) }).await;
    assert_eq!(collector.ids(), want);
}
