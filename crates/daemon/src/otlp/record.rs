//! One events-file line as one OTLP LogRecord, and a batch of them as one export request.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

fn value(v: &serde_json::Value) -> Option<AnyValue> {
    use serde_json::Value as J;
    let value = match v {
        J::Null => return None,
        J::Bool(b) => any_value::Value::BoolValue(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64().unwrap_or_default()),
        },
        J::String(s) => any_value::Value::StringValue(s.clone()),
        J::Array(items) => any_value::Value::ArrayValue(ArrayValue {
            values: items.iter().map(|i| value(i).unwrap_or_default()).collect(),
        }),
        J::Object(map) => any_value::Value::KvlistValue(KeyValueList {
            values: attributes(map),
        }),
    };
    Some(AnyValue { value: Some(value) })
}

fn attributes(map: &serde_json::Map<String, serde_json::Value>) -> Vec<KeyValue> {
    map.iter()
        .filter_map(|(k, v)| {
            value(v).map(|v| KeyValue {
                key: k.clone(),
                value: Some(v),
                ..KeyValue::default()
            })
        })
        .collect()
}

pub(super) fn text(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.to_owned())),
    })
}

/// OTLP's severity number and text for a syslog severity (3 error … 6 info).
fn severity(syslog: u8) -> (i32, &'static str) {
    match syslog {
        0..=3 => (17, "ERROR"),
        4 => (13, "WARN"),
        5 => (10, "INFO2"),
        _ => (9, "INFO"),
    }
}

/// The LogRecord for one line of the events file.
pub fn record(line: &str, observed_nanos: u64) -> LogRecord {
    let Ok(map) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(line) else {
        // Not pullguardd's JSON (a line cut by a crash): sent as it is, marked.
        return LogRecord {
            observed_time_unix_nano: observed_nanos,
            severity_number: 13,
            severity_text: "WARN".to_owned(),
            body: text(line),
            attributes: vec![KeyValue {
                key: "pullguard.unparsed".to_owned(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::BoolValue(true)),
                }),
                ..KeyValue::default()
            }],
            ..LogRecord::default()
        };
    };
    let kind = map.get("event").and_then(|v| v.as_str()).unwrap_or("event");
    let (severity_number, severity_text) =
        severity(api::codes::EventKind::parse(kind).map_or(6, api::codes::EventKind::severity));
    let time = map
        .get("time")
        .and_then(|v| v.as_str())
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .and_then(|t| u64::try_from(t.unix_timestamp_nanos()).ok())
        .unwrap_or_default();
    LogRecord {
        time_unix_nano: time,
        observed_time_unix_nano: observed_nanos,
        severity_number,
        severity_text: severity_text.to_owned(),
        body: map.get("message").and_then(|m| m.as_str()).and_then(text),
        event_name: kind.to_owned(),
        attributes: attributes(&map),
        ..LogRecord::default()
    }
}

/// The export request for `lines`, from this node.
pub fn request(lines: &[String], host: &str) -> ExportLogsServiceRequest {
    let observed = u64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(0);
    let attr = |k: &str, v: &str| KeyValue {
        key: k.to_owned(),
        value: text(v),
        ..KeyValue::default()
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    attr("service.name", "pullguardd"),
                    attr("service.version", env!("CARGO_PKG_VERSION")),
                    attr("host.name", host),
                ],
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "pullguard.events".to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..InstrumentationScope::default()
                }),
                log_records: lines.iter().map(|l| record(l, observed)).collect(),
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}
