//! `pullguard policy diff`: which verdicts a policy change would change, for the images
//! in containerd now or a list, each judged offline by both policies.

use std::io::IsTerminal as _;
use std::path::Path;
use std::process::ExitCode;

use api::codes::ReasonCode;
use serde_json::json;

use crate::exit::{fail, Exit};

/// Images to evaluate: (label, reference, digest).
fn images_from_list(path: &Path) -> Result<Vec<(String, String, Option<String>)>, String> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).map_err(|e| format!("cannot read stdin: {e}"))?
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?
    };
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| (l.to_owned(), l.to_owned(), None))
        .collect())
}

pub fn diff(
    old: &Path,
    new: &Path,
    list: Option<&Path>,
    containerd: &Path,
    json_out: bool,
) -> ExitCode {
    let result = crate::daemon_client::block_on(async {
        let old_engine =
            daemon::offline::Offline::load(old).map_err(|e| (Exit::Usage, "bad_policy", e))?;
        let new_engine =
            daemon::offline::Offline::load(new).map_err(|e| (Exit::Usage, "bad_policy", e))?;
        for note in new_engine.notes() {
            eprintln!("pullguard: note: {note}");
        }
        let images = match list {
            Some(path) => images_from_list(path).map_err(|e| (Exit::Usage, "bad_image_list", e))?,
            None => daemon::offline::containerd_images(containerd)
                .await
                .map_err(|e| (Exit::Unreachable, "containerd_unreachable", e.to_string()))?
                .into_iter()
                .map(|(ns, name, digest)| (format!("{ns}/{name}"), name, Some(digest)))
                .collect(),
        };
        let progress = !json_out && std::io::stderr().is_terminal() && images.len() > 20;
        let mut rows = Vec::new();
        for (i, (label, image, digest)) in images.iter().enumerate() {
            if progress {
                eprint!("\rchecked {i}/{}", images.len());
            }
            let a = old_engine.verify(image, digest.as_deref()).await;
            let b = new_engine.verify(image, digest.as_deref()).await;
            rows.push((label.clone(), a, b));
        }
        if progress {
            eprintln!("\rchecked {0}/{0}", images.len());
        }
        Ok::<_, (Exit, &str, String)>(rows)
    });
    let rows = match result {
        Err(e) => {
            return fail(
                Exit::Usage,
                json_out,
                ReasonCode::InternalError.as_str(),
                &e,
            )
        }
        Ok(Err((code, error, message))) => return fail(code, json_out, error, &message),
        Ok(Ok(rows)) => rows,
    };
    let state = |v: &api::VerifyResponse| match (v.allowed, v.reason.is_empty()) {
        (true, true) => "allowed".to_owned(),
        (true, false) => format!("audited [{}]", v.reason),
        (false, _) => format!("rejected [{}]", v.reason),
    };
    let changed: Vec<_> = rows
        .iter()
        .filter(|(_, a, b)| (a.allowed, &a.reason) != (b.allowed, &b.reason))
        .collect();
    if json_out {
        let items: Vec<_> = rows
            .iter()
            .map(|(label, a, b)| {
                json!({"image": label, "changed": (a.allowed, &a.reason) != (b.allowed, &b.reason),
                       "old": {"allowed": a.allowed, "reason": a.reason, "rule": a.rule, "mode": a.mode},
                       "new": {"allowed": b.allowed, "reason": b.reason, "rule": b.rule, "mode": b.mode}})
            })
            .collect();
        println!(
            "{}",
            json!({"images": rows.len(), "changed": changed.len(), "results": items})
        );
    } else {
        for (label, a, b) in &changed {
            println!(
                "{label}: {} (rule {}) -> {} (rule {})",
                state(a),
                a.rule,
                state(b),
                b.rule
            );
        }
        let newly_rejected = changed
            .iter()
            .filter(|(_, a, b)| a.allowed && !b.allowed)
            .count();
        let changes = match changed.len() {
            1 => "1 verdict changes".to_owned(),
            n => format!("{n} verdicts change"),
        };
        println!(
            "{}, {changes} ({newly_rejected} newly rejected) from {} to {}",
            api::plural(u64::try_from(rows.len()).unwrap_or(u64::MAX), "image"),
            old.display(),
            new.display()
        );
    }
    if changed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(Exit::Refused)
    }
}
