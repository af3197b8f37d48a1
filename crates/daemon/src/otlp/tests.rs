//! The export's reader against the real events file writer (its rotation included), and
//! the record mapping. The collector end is tested in tests/otlp.rs, against a real one.

use opentelemetry_proto::tonic::common::v1::any_value;

use super::record::text;
use super::*;
use crate::events::EventLog;

fn write(log: &EventLog, n: usize, tag: &str) -> Vec<String> {
    (0..n)
        .map(|i| {
            let ev = log.new_event(
                api::codes::EventKind::PullRejected,
                1,
                format!("{tag} event {i}"),
            );
            log.record(&ev, true).expect("record");
            ev.event_id
        })
        .collect()
}

/// Reads everything there is now, committing each batch; the event IDs in order.
fn drain(f: &mut Follower) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let batch = f.next_batch().expect("read");
        if batch.lines.is_empty() {
            return ids;
        }
        for line in &batch.lines {
            let v: serde_json::Value = serde_json::from_str(line).expect("whole JSON line");
            ids.push(v["event_id"].as_str().expect("id").to_owned());
        }
        f.commit();
    }
}

#[test]
fn lines_come_once_each_in_order_across_rotations() {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("events.jsonl");
    // About three lines a file: every few events rotate.
    let log = EventLog::open(&path, 900, 4).expect("open");
    let mut f = Follower::new(&path, 4);
    f.resume(None);
    let mut want = write(&log, 2, "a");
    let mut got = drain(&mut f);
    // Rotations while the reader is in the middle of a file and while it is not reading.
    want.extend(write(&log, 7, "b"));
    got.extend(drain(&mut f));
    want.extend(write(&log, 5, "c"));
    got.extend(drain(&mut f));
    assert!(
        PathBuf::from(format!("{}.2", path.display())).exists(),
        "the test rotated"
    );
    assert_eq!(got, want);
}

#[test]
fn a_batch_the_collector_did_not_take_is_read_again_from_the_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("events.jsonl");
    let log = EventLog::open(&path, 1 << 20, 2).expect("open");
    write(&log, 3, "a");
    let mut f = Follower::new(&path, 2);
    f.resume(None);
    let first = f.next_batch().expect("read").lines;
    assert_eq!(first.len(), 3);
    assert!(f.next_batch().expect("read").lines.is_empty(), "all out");
    f.rewind();
    assert_eq!(f.next_batch().expect("read").lines, first);
}

#[test]
fn a_restart_resumes_at_the_saved_cursor_even_after_rotations() {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("events.jsonl");
    let log = EventLog::open(&path, 900, 5).expect("open");
    let mut f = Follower::new(&path, 5);
    f.resume(None);
    write(&log, 2, "sent");
    drain(&mut f);
    let cursor = f.commit().expect("a cursor");
    save_cursor(tmp.path(), &cursor).expect("save");
    // The collector is down, pullguardd restarts, the file rotates twice meanwhile.
    let want = write(&log, 8, "pending");
    let mut again = Follower::new(&path, 5);
    again.resume(load_cursor(tmp.path()).as_ref());
    let first = again.next_batch().expect("read");
    assert!(first.gap.is_none(), "{:?}", first.gap);
    again.rewind();
    assert_eq!(drain(&mut again), want);
}

#[test]
fn a_cursor_rotated_out_of_the_kept_files_is_said_as_a_gap() {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("events.jsonl");
    let log = EventLog::open(&path, 600, 1).expect("open");
    let mut f = Follower::new(&path, 1);
    f.resume(None);
    write(&log, 1, "sent");
    drain(&mut f);
    let cursor = f.commit().expect("a cursor");
    write(&log, 12, "lost");
    let mut again = Follower::new(&path, 1);
    again.resume(Some(&cursor));
    let batch = again.next_batch().expect("read");
    let gap = batch.gap.expect("a gap");
    assert!(gap.contains("rotated past the last line"), "{gap}");
    assert!(!batch.lines.is_empty(), "goes on with what is kept");
}

#[test]
fn an_over_long_line_is_skipped_and_counted_and_the_next_one_is_sent() {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("events.jsonl");
    let long = "x".repeat(MAX_LINE + 70_000);
    std::fs::write(&path, format!("{{\"a\":1}}\n{long}\n{{\"b\":2}}\n")).expect("write");
    let mut f = Follower::new(&path, 0);
    f.resume(None);
    let mut lines = Vec::new();
    let mut skipped = 0;
    for _ in 0..4 {
        let b = f.next_batch().expect("read");
        lines.extend(b.lines);
        skipped += b.skipped;
        f.commit();
    }
    assert_eq!(lines, ["{\"a\":1}", "{\"b\":2}"]);
    assert_eq!(skipped, 1);
}

#[test]
fn a_partial_last_line_waits_until_it_is_whole() {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("events.jsonl");
    std::fs::write(&path, "{\"a\":1}\n{\"b\":").expect("write");
    let mut f = Follower::new(&path, 0);
    f.resume(None);
    assert_eq!(f.next_batch().expect("read").lines, ["{\"a\":1}"]);
    f.commit();
    assert!(f.next_batch().expect("read").lines.is_empty());
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open");
    std::io::Write::write_all(&mut file, b"2}\n").expect("append");
    assert_eq!(f.next_batch().expect("read").lines, ["{\"b\":2}"]);
}

#[test]
fn every_field_of_the_line_becomes_an_attribute_of_the_same_name() {
    let line = r#"{"time":"2026-12-06T10:00:00.5Z","event":"pull.rejected","image":"r/a:1","digest":null,"message":"no","policy_generation":3,"dry_run":true,"proofs":[{"proof":"cosign","passed":false}]}"#;
    let r = record(line, 7);
    assert_eq!(r.time_unix_nano, 1_796_551_200_500_000_000);
    assert_eq!(r.observed_time_unix_nano, 7);
    assert_eq!(r.event_name, "pull.rejected");
    // A rejection is a syslog warning (sinks::rfc5424), so OTLP WARN.
    assert_eq!((r.severity_number, r.severity_text.as_str()), (13, "WARN"));
    assert_eq!(r.body, text("no"));
    let get = |k: &str| {
        r.attributes
            .iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.clone())
            .and_then(|v| v.value)
    };
    assert_eq!(
        get("image"),
        Some(any_value::Value::StringValue("r/a:1".into()))
    );
    assert_eq!(
        get("policy_generation"),
        Some(any_value::Value::IntValue(3))
    );
    assert_eq!(get("dry_run"), Some(any_value::Value::BoolValue(true)));
    assert_eq!(get("digest"), None, "null fields are left out, as absent");
    let Some(any_value::Value::ArrayValue(proofs)) = get("proofs") else {
        panic!("proofs is an array");
    };
    assert_eq!(proofs.values.len(), 1);
    assert_eq!(r.attributes.len(), 7);
    let odd = record("{\"cut", 1);
    assert_eq!(odd.body, text("{\"cut"));
    assert_eq!(odd.attributes[0].key, "pullguard.unparsed");
}
