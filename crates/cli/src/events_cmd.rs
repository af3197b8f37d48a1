//! `pullguard events`: the node's events file (docs/contracts.md §3), filtered, and
//! followed as it grows (rotation included).
//!
//! Exit codes: 0 printed (even none), 2 bad usage or an unreadable file.

use crate::exit::Exit;
use std::io::{BufRead as _, Read as _, Seek as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub const EXAMPLES: &str = "Examples:
  pullguard events --since 1h --reason unknown_tag
  pullguard events --follow --event pull.rejected --json | your-shipper
  pullguard events --file /var/log/pullguard/events.jsonl --image 'registry.example.com/prod/**'

Exit codes: 0 listed (none may match), 2 bad usage or an unreadable events file.";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Keep printing events as they are written.
    #[arg(long)]
    follow: bool,
    /// Only events newer than this (e.g. 30m, 2h, 7d).
    #[arg(long, value_name = "DURATION")]
    since: Option<String>,
    /// Only events with this reason code.
    #[arg(long, value_name = "CODE", value_parser = reason_code)]
    reason: Option<String>,
    /// Only events of this kind (pull.rejected, image.removed, policy.invalid, ...).
    #[arg(long, value_name = "KIND", value_parser = event_kind)]
    event: Option<String>,
    /// Only events whose image matches this pattern (`*`, `**`, `?` as in the policy) or,
    /// without wildcards, contains this text.
    #[arg(long, value_name = "TEXT")]
    image: Option<String>,
    /// The events file (default: `events_file` of the policy, else /var/log/pullguard/events.jsonl).
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// The policy whose `[daemon] events_file` to read.
    #[arg(long, value_name = "FILE", default_value = crate::policy_cmd::DEFAULT_POLICY)]
    policy: PathBuf,
    /// Print the events as written (one JSON object per line).
    #[arg(long)]
    json: bool,
}

/// `--image`: a policy-style glob when it has `*` or `?` (`registry.example.com/prod/**`),
/// else text the image contains.
fn image_matches(filter: &str, image: &str) -> bool {
    if filter.contains(['*', '?']) {
        policy::pattern_matches(filter, image)
    } else {
        image.contains(filter)
    }
}

struct Filter {
    since: Option<OffsetDateTime>,
    reason: Option<String>,
    event: Option<String>,
    image: Option<String>,
}

impl Filter {
    fn keeps(&self, e: &Value) -> bool {
        let field = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
        if let Some(since) = self.since {
            match OffsetDateTime::parse(field("time"), &Rfc3339) {
                Ok(t) if t >= since => {}
                _ => return false,
            }
        }
        self.reason.as_deref().is_none_or(|r| field("reason") == r)
            && self.event.as_deref().is_none_or(|k| field("event") == k)
            && self
                .image
                .as_deref()
                .is_none_or(|i| image_matches(i, field("image")))
    }
}

const DEFAULT_EVENTS: &str = "/var/log/pullguard/events.jsonl";

/// The events file to read: `--file`, else the policy's `events_file`. A policy that
/// does not load is said so (its `policy.invalid` event is what the operator is after),
/// and then pullguardd, if it answers, tells which file it writes; else the default.
fn events_file(args: &Args) -> PathBuf {
    if let Some(f) = &args.file {
        return f.clone();
    }
    let e = match policy::Policy::load(&args.policy) {
        Ok(p) => return p.daemon.events_file,
        Err(e) => e,
    };
    let first = e.each().next().unwrap_or_default();
    eprintln!(
        "pullguard: the policy does not load ({first}), so the events file it names is unknown"
    );
    let asked = crate::daemon_client::block_on(async {
        let mut c = crate::daemon_client::connect_quietly().await?;
        c.status(api::StatusRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| s.message().to_owned())
    });
    match asked {
        Ok(Ok(s)) if !s.events_file.is_empty() => {
            eprintln!(
                "pullguard: reading {}, the events file pullguardd writes (its policy in force: generation {})",
                s.events_file, s.policy_generation
            );
            PathBuf::from(s.events_file)
        }
        other => {
            let why = match other {
                Ok(Err(e)) | Err(e) => e,
                Ok(Ok(_)) => "it names no events file".to_owned(),
            };
            eprintln!(
                "pullguard: pullguardd did not answer ({why}); reading the default {DEFAULT_EVENTS} (give --file if the policy names another)"
            );
            PathBuf::from(DEFAULT_EVENTS)
        }
    }
}

fn print(line: &str, filter: &Filter, json_out: bool) {
    let Ok(e) = serde_json::from_str::<Value>(line) else {
        eprintln!("pullguard: skipped a line that is not JSON: {:.80}", line);
        return;
    };
    if !filter.keeps(&e) {
        return;
    }
    if json_out {
        println!("{line}");
        return;
    }
    // An events file written by another (or an older) pullguardd may hold raw control
    // characters: they must not reach the operator's terminal.
    let f = |k: &str| api::capped(e.get(k).and_then(Value::as_str).unwrap_or(""), 64 * 1024);
    let mut out = format!("{} {:<15}", f("time"), f("event"));
    for k in ["image", "reason", "rule", "source"] {
        let v = f(k);
        if !v.is_empty() {
            out.push_str(&format!(" {k}={v}"));
        }
    }
    let m = f("message");
    if !m.is_empty() {
        out.push_str(" | ");
        out.push_str(&m);
    }
    println!("{out}");
}

pub fn run(args: &Args) -> ExitCode {
    let since = match &args.since {
        None => None,
        Some(s) => match policy::duration::parse(s) {
            Ok(d) => Some(OffsetDateTime::now_utc() - d),
            Err(e) => {
                eprintln!("pullguard: --since {s}: {e}");
                return ExitCode::from(Exit::Usage);
            }
        },
    };
    let filter = Filter {
        since,
        reason: args.reason.clone(),
        event: args.event.clone(),
        image: args.image.clone(),
    };
    let path = events_file(args);
    // Rotated files first, oldest first, when their events may be wanted.
    if since.is_some() || !args.follow {
        for n in (1..=20).rev() {
            let rotated = PathBuf::from(format!("{}.{n}", path.display()));
            if let Ok(f) = std::fs::File::open(&rotated) {
                for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
                    print(&line, &filter, args.json);
                }
            }
        }
    }
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if args.follow && e.kind() == std::io::ErrorKind::NotFound => {
            return follow(&path, None, &filter, args.json);
        }
        Err(e) => {
            // What helps depends on why: a file that is not there wants another path
            // (unless --file already named it), one that is there wants the rights.
            let hint = match (e.kind(), args.file.is_some()) {
                (std::io::ErrorKind::NotFound, true) => "check the path given with --file",
                (std::io::ErrorKind::NotFound, false) => {
                    "give its path with --file, or the policy naming it with --policy"
                }
                (std::io::ErrorKind::PermissionDenied, _) => {
                    "run as root or as a user that may read it"
                }
                _ => "check the file",
            };
            eprintln!(
                "pullguard: cannot read the events file {}: {e} ({hint})",
                path.display()
            );
            return ExitCode::from(Exit::Usage);
        }
    };
    let mut reader = std::io::BufReader::new(file);
    let mut pending = String::new();
    let mut buf = String::new();
    loop {
        buf.clear();
        match reader.read_line(&mut buf) {
            Ok(0) => break,
            Ok(_) if buf.ends_with('\n') => {
                pending.push_str(&buf);
                print(pending.trim_end(), &filter, args.json);
                pending.clear();
            }
            Ok(_) => pending.push_str(&buf),
            Err(e) => {
                eprintln!("pullguard: reading {}: {e}", path.display());
                return ExitCode::from(Exit::Usage);
            }
        }
    }
    if !args.follow {
        return ExitCode::SUCCESS;
    }
    let mut file = reader.into_inner();
    let offset = file.stream_position().unwrap_or(0) - pending.len() as u64;
    let _ = file.seek(std::io::SeekFrom::Start(offset));
    follow(&path, Some(file), &filter, args.json)
}

/// Prints complete lines as they are appended; reopens the file when pullguardd
/// rotates it (another inode, or shorter than what was read).
fn follow(
    path: &Path,
    mut file: Option<std::fs::File>,
    filter: &Filter,
    json_out: bool,
) -> ExitCode {
    let mut pending = Vec::new();
    loop {
        if file.is_none() {
            file = std::fs::File::open(path).ok();
            pending.clear();
        }
        if let Some(f) = file.as_mut() {
            let mut chunk = Vec::new();
            if f.read_to_end(&mut chunk).is_ok() {
                pending.extend_from_slice(&chunk);
                while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=i).collect();
                    print(String::from_utf8_lossy(&line).trim_end(), filter, json_out);
                }
            }
            let here = f.stream_position().unwrap_or(0);
            let rotated = match (std::fs::metadata(path), f.metadata()) {
                (Ok(on_disk), Ok(open)) => on_disk.ino() != open.ino() || on_disk.len() < here,
                _ => true,
            };
            if rotated {
                // Read what was appended to the old file before it moved, then switch.
                let mut rest = Vec::new();
                let _ = f.read_to_end(&mut rest);
                pending.extend_from_slice(&rest);
                while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=i).collect();
                    print(String::from_utf8_lossy(&line).trim_end(), filter, json_out);
                }
                file = None;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `--reason`: a reason code of the contract; a typo would match nothing, silently.
fn reason_code(s: &str) -> Result<String, String> {
    let all: Vec<&str> = api::codes::ReasonCode::ALL
        .iter()
        .map(|c| c.as_str())
        .collect();
    known(s, &all, "reason code", "docs/reasons.md lists them")
}

/// `--event`: an event kind of the contract.
fn event_kind(s: &str) -> Result<String, String> {
    let all: Vec<&str> = api::codes::EventKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    known(s, &all, "event kind", "docs/reasons.md lists them")
}

/// `s` if it is one of `all`, else an error naming the nearest.
fn known(s: &str, all: &[&str], what: &str, where_: &str) -> Result<String, String> {
    if all.contains(&s) {
        return Ok(s.to_owned());
    }
    let nearest = all
        .iter()
        .min_by_key(|k| policy::edit_distance(s, k))
        .copied()
        .unwrap_or_default();
    Err(format!(
        "no {what} {s:?}; did you mean {nearest:?}? ({where_})"
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn typod_filters_are_refused_with_the_nearest_value() {
        assert_eq!(
            super::reason_code("unknown_tag").as_deref(),
            Ok("unknown_tag")
        );
        let e = super::reason_code("unknwn_tag").unwrap_err();
        assert!(e.contains("did you mean \"unknown_tag\""), "{e}");
        let e = super::event_kind("pull.rejectd").unwrap_err();
        assert!(e.contains("did you mean \"pull.rejected\""), "{e}");
        assert_eq!(policy::edit_distance("kitten", "sitting"), 3);
    }
}
