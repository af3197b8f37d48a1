//! `pullguard policy check | explain | diff`: what a policy file says, before it is
//! rolled out.
//!
//! Exit codes: check 0 valid (warnings allowed), 1 invalid; explain 0 a rule applies,
//! 1 none does; diff 0 no verdict changes, 1 some change; 2 bad usage or an unreadable
//! file or image list, 3 containerd cannot be reached.

use api::codes::ReasonCode;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::exit::{fail, Exit};

use policy::{ImageRef, Policy, Require};
use serde_json::json;

pub const DEFAULT_POLICY: &str = "/etc/pullguard/pullguard.toml";

pub const EXAMPLES: &str = "Examples:
  pullguard policy check /etc/pullguard/pullguard.toml.new
  pullguard policy explain docker.io/library/alpine:3.20
  pullguard policy diff /etc/pullguard/pullguard.toml pullguard.toml.new            # images in containerd
  pullguard policy diff old.toml new.toml --images images.txt --json                # one reference per line";

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Check a policy file: every error with line and column, then warnings.
    #[command(
        after_help = "Examples:\n  pullguard policy check /etc/pullguard/pullguard.toml.new\n  pullguard policy check --syntax-only pullguard.toml     # on a build machine without the keys and CA files\n\nExit codes: 0 valid (warnings may be listed), 1 invalid (every problem listed), 2 unreadable file."
    )]
    Check {
        /// The policy file.
        file: PathBuf,
        /// Check the file itself only, not the files it names (keys, CA files, trust
        /// stores, the keys directory): for a build machine that does not have them.
        #[arg(long)]
        syntax_only: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Which rule applies to an image, and why it beats the others.
    #[command(
        after_help = "Example:\n  pullguard policy explain registry.example.com/team/app:v3 --policy pullguard.toml.new\n\nExit codes: 0 a rule applies, 1 no rule matches (the image would be rejected), 2 bad reference or unreadable policy."
    )]
    Explain {
        /// Image reference, as you would pull it.
        image: String,
        /// The policy file.
        #[arg(long, value_name = "FILE", default_value = DEFAULT_POLICY)]
        policy: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Shadow evaluation: which verdicts would change from OLD to NEW, for the images in
    /// containerd or a given list. Fetches trust data; enforces nothing.
    #[command(
        after_help = "Examples:\n  pullguard policy diff /etc/pullguard/pullguard.toml pullguard.toml.new\n  pullguard policy diff old.toml new.toml --images images.txt --json\n\nExit codes: 0 no verdict changes, 1 some verdicts change, 2 bad usage or unreadable policy, 3 containerd unreachable."
    )]
    Diff {
        /// The policy in force.
        old: PathBuf,
        /// The policy to roll out.
        new: PathBuf,
        /// A file of image references (REF or REF@sha256:HEX), one per line; `-` for stdin.
        #[arg(long, value_name = "FILE")]
        images: Option<PathBuf>,
        /// containerd's socket, when no list is given.
        #[arg(
            long,
            value_name = "PATH",
            default_value = "/run/containerd/containerd.sock"
        )]
        containerd: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Turn a Notation trust policy (trustpolicy.json) into pullguard rules, printed as TOML.
    #[command(after_help = crate::import_notation::EXAMPLES)]
    ImportNotation {
        /// Notation's trustpolicy.json.
        file: PathBuf,
        /// Notation's truststore directory (checked for every store the policy names).
        #[arg(long, value_name = "DIR")]
        trust_store: Option<PathBuf>,
    },
    /// Turn the signature policies of other tools (sigstore policy-controller
    /// ClusterImagePolicy, containers-policy.json) into pullguard rules, printed as TOML;
    /// what cannot be expressed exactly is refused with its reason.
    #[command(after_help = crate::import::EXAMPLES)]
    Import {
        /// What the files are.
        #[arg(long = "from", value_enum, value_name = "SOURCE")]
        from: crate::import::Source,
        /// The documents (policy-controller: YAML, several per file or a `kubectl get -o
        /// yaml` List; containers-policy: policy.json).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Where inline public keys (key.data) are written, as CIP-N.pub; the rules name
        /// them there.
        #[arg(long, value_name = "DIR")]
        key_dir: Option<PathBuf>,
    },
}

pub fn run(command: &Command) -> ExitCode {
    match command {
        Command::Check {
            file,
            json,
            syntax_only,
        } => check(file, *json, *syntax_only),
        Command::Explain {
            image,
            policy,
            json,
        } => explain(image, policy, *json),
        Command::Diff {
            old,
            new,
            images,
            containerd,
            json,
        } => crate::policy_diff::diff(old, new, images.as_deref(), containerd, *json),
        Command::ImportNotation { file, trust_store } => {
            crate::import_notation::run(file, trust_store.as_ref())
        }
        Command::Import {
            from,
            files,
            key_dir,
        } => crate::import::run(*from, files, key_dir.as_deref()),
    }
}

/// `1 rule`, `2 rules`.
fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Where a problem about a file the policy names is written: the first quoted value of
/// the policy text that the message names (a path is named resolved, so a relative value
/// is a suffix of it). Line and column, 1-based.
fn locate(text: &str, message: &str) -> Option<(usize, usize)> {
    for (n, line) in text.lines().enumerate() {
        let code = line.split('#').next().unwrap_or("");
        let mut rest = code;
        while let Some(start) = rest.find('"') {
            let after = &rest[start + 1..];
            let Some(end) = after.find('"') else { break };
            let value = &after[..end];
            if value.len() >= 3
                && (value.contains('/') || value.contains(':') || value.contains('.'))
                && message.contains(value)
            {
                let column = code.len() - rest.len() + start + 1;
                return Some((n + 1, column));
            }
            rest = &after[end + 1..];
        }
    }
    None
}

/// One problem per distinct cause: the same file refused for several rules is one line
/// naming them all ("rules a, b: root_cas …").
fn merge_rules(messages: Vec<String>) -> Vec<String> {
    let mut merged: Vec<(Vec<String>, String)> = Vec::new();
    for m in messages {
        let (rule, rest) = match m.strip_prefix("rule ").and_then(|r| r.split_once(": ")) {
            Some((rule, rest)) => (Some(rule.to_owned()), rest.to_owned()),
            None => (None, m),
        };
        match (
            rule,
            merged
                .iter_mut()
                .find(|(rules, r)| *r == rest && !rules.is_empty()),
        ) {
            (Some(rule), Some((rules, _))) => rules.push(rule),
            (rule, _) => merged.push((rule.into_iter().collect(), rest)),
        }
    }
    merged
        .into_iter()
        .map(|(rules, rest)| match rules.len() {
            0 => rest,
            1 => format!("rule {}: {rest}", rules[0]),
            _ => format!("rules {}: {rest}", rules.join(", ")),
        })
        .collect()
}

/// What to do about a file that is not there.
fn with_hint(message: String) -> String {
    if message.contains("No such file or directory") {
        format!("{message}; create it or correct the path (`policy check --syntax-only` checks the rest on a machine without the files)")
    } else {
        message
    }
}

fn check(file: &Path, json_out: bool, syntax_only: bool) -> ExitCode {
    // Unreadable input is exit 2, as in every other command; 1 means "read, and invalid".
    if let Err(e) = std::fs::File::open(file) {
        return fail(
            Exit::Usage,
            json_out,
            "unreadable",
            &format!("cannot read the policy file {}: {e}", file.display()),
        );
    }
    // The daemon's own preparation too (CA files, pinned certificates, the keys
    // directory and its permissions): "valid" only when pullguardd would load it.
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let loaded = Policy::load(file).and_then(|p| {
        if syntax_only {
            return Ok(p);
        }
        daemon::offline::check(p, file).map_err(|problems| policy::PolicyError {
            file: file.to_path_buf(),
            problems: merge_rules(problems)
                .into_iter()
                .map(|message| {
                    let (line, column) = locate(&text, &message).unwrap_or((0, 0));
                    policy::Problem {
                        line,
                        column,
                        message: with_hint(message),
                    }
                })
                .collect(),
        })
    });
    match loaded {
        Err(e) => {
            if json_out {
                let problems: Vec<_> = e
                    .problems
                    .iter()
                    .map(|p| json!({"line": p.line, "column": p.column, "message": p.message}))
                    .collect();
                println!(
                    "{}",
                    json!({"valid": false, "file": file, "errors": problems, "warnings": []})
                );
            } else {
                for p in &e.problems {
                    if p.line == 0 {
                        // A file or setting the policy names, not a place in the text.
                        println!("{}: error: {}", file.display(), p.message);
                    } else {
                        println!(
                            "{}:{}:{}: error: {}",
                            file.display(),
                            p.line,
                            p.column,
                            p.message
                        );
                    }
                }
                println!(
                    "{}: invalid ({}); pullguardd would keep its last good policy",
                    file.display(),
                    count(e.problems.len(), "error")
                );
            }
            ExitCode::from(Exit::Refused)
        }
        Ok(p) => {
            let warnings = p.lint();
            if json_out {
                let w: Vec<_> = warnings
                    .iter()
                    .map(|w| json!({"rule": w.rule, "line": w.line, "column": w.column, "message": w.message}))
                    .collect();
                println!(
                    "{}",
                    json!({"valid": true, "file": file, "rules": p.rules.len(), "errors": [], "warnings": w})
                );
            } else {
                for w in &warnings {
                    println!(
                        "{}:{}:{}: warning: {}",
                        file.display(),
                        w.line,
                        w.column,
                        w.message
                    );
                }
                println!(
                    "{}: valid, {}, {}",
                    file.display(),
                    count(p.rules.len(), "rule"),
                    count(warnings.len(), "warning")
                );
            }
            ExitCode::SUCCESS
        }
    }
}

fn describe(r: &policy::Rule) -> String {
    let mut parts = vec![r.mode.as_str().to_owned()];
    parts.push(
        match r.require {
            Require::Signed => "signed",
            Require::Any => "any image",
            Require::Reject => "reject",
        }
        .to_owned(),
    );
    if r.require == Require::Signed {
        let kinds: Vec<&str> = r.proofs.iter().map(|p| p.as_str()).collect();
        parts.push(match (kinds.len(), r.proofs_required) {
            (1, _) => format!("proof {}", kinds[0]),
            (_, policy::ProofsRequired::Any) => format!(
                "any one of the proofs {} (tried in this order)",
                kinds.join(", ")
            ),
            (_, policy::ProofsRequired::All) => {
                format!("every one of the proofs {}", kinds.join(", "))
            }
        });
        if r.proofs.contains(&policy::Proof::Cosign) {
            let c = &r.cosign;
            parts.push(format!(
                "cosign: signed by one of {} key(s) ({}), transparency log {}{}{}",
                c.keys.len(),
                c.keys
                    .iter()
                    .map(|k| k.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                if c.tlog { "required" } else { "not required" },
                if c.check_reference {
                    ", signed docker-reference checked"
                } else {
                    ""
                },
                c.signature_repository
                    .as_deref()
                    .map(|s| format!(", signatures in {s}"))
                    .unwrap_or_default(),
            ));
        }
        if r.proofs.contains(&policy::Proof::Notation) {
            let n = &r.notation;
            let stores: Vec<String> = n
                .trust_stores
                .iter()
                .map(|(t, s)| format!("{t}:{s}"))
                .collect();
            parts.push(format!(
                "notation: {} verification, trust stores {}, identities {}, revocation {}",
                n.level,
                stores.join(" "),
                n.identities.join(" | "),
                if n.revocation == policy::Revocation::Skip {
                    "not checked (offline)"
                } else {
                    "required (refused offline)"
                }
            ));
        }
        if !r.proofs.contains(&policy::Proof::NotaryV1) {
            parts.push(format!("on unreachable: {:?}", r.on_unreachable).to_lowercase());
            return parts.join(", ");
        }
        if let Some(ts) = &r.trust_server {
            parts.push(format!("trust server {ts}"));
        }
        if r.roles.is_empty() {
            parts.push("roles targets/releases or targets (Docker's rules)".to_owned());
        } else {
            parts.push(format!(
                "{} of roles {}",
                r.roles_required,
                r.roles.join(", ")
            ));
        }
        if let Some(age) = r.max_timestamp_age {
            parts.push(format!("timestamp at most {age} old"));
        }
        parts.push(format!("on unreachable: {:?}", r.on_unreachable).to_lowercase());
        let pins = r.root_key_ids.len() + r.root_cas.len() + r.root_certs.len();
        if pins > 0 {
            parts.push(count(pins, "pinned root"));
        }
        if r.tofu {
            parts.push("trust on first use allowed".to_owned());
        }
    }
    parts.join(", ")
}

fn explain(image: &str, file: &Path, json_out: bool) -> ExitCode {
    let p = match Policy::load(file) {
        Ok(p) => p,
        Err(e) => return fail(Exit::Usage, json_out, "bad_policy", &e.to_string()),
    };
    let reference = match ImageRef::parse(image) {
        Ok(r) => r,
        Err(e) => {
            return fail(
                Exit::Usage,
                json_out,
                ReasonCode::InvalidReference.as_str(),
                &e.to_string(),
            )
        }
    };
    let candidates = p.candidates(&reference);
    let why = |i: usize| -> String {
        let r = candidates[i];
        let (exact, prefix, literal) = r.specificity();
        if i == 0 {
            match candidates.get(1) {
                None => "the only rule that matches".to_owned(),
                Some(next) if exact && !next.specificity().0 => {
                    "an exact pattern beats every wildcard".to_owned()
                }
                // Only the same pattern twice can tie (different ones are refused).
                Some(next) if next.specificity() == (exact, prefix, literal) => {
                    format!("the same pattern as rule {}, and earlier in the file", next.name)
                }
                Some(next) if next.specificity().1 < prefix => format!(
                    "the longest literal text before a wildcard ({prefix} characters)"
                ),
                Some(_) => format!(
                    "as long a literal text before a wildcard ({prefix} characters), and the most literal characters ({literal})"
                ),
            }
        } else {
            "loses to a more specific or earlier rule".to_owned()
        }
    };
    if json_out {
        let list: Vec<_> = candidates
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let (exact, prefix, literal) = r.specificity();
                json!({"rule": r.name, "match": r.pattern, "line": r.position.0, "exact": exact,
                       "literal_prefix": prefix, "literal_characters": literal, "wins": i == 0, "why": why(i), "effect": describe(r)})
            })
            .collect();
        println!(
            "{}",
            json!({"image": reference.to_string(), "repository": reference.repository(),
                   "rule": candidates.first().map(|r| r.name.clone()), "candidates": list})
        );
    } else {
        println!("image       {image}");
        println!("normalised  {reference}");
        println!("repository  {}", reference.repository());
        if candidates.is_empty() {
            println!(
                "rule        none: the image is rejected (no_matching_rule); add a rule for it or a catch-all `match = \"**\"`"
            );
        }
        for (i, r) in candidates.iter().enumerate() {
            let label = if i == 0 { "rule" } else { "also matches" };
            println!(
                "{label:<11} {} (match {:?}, line {}): {}",
                r.name,
                r.pattern,
                r.position.0,
                why(i)
            );
            if i == 0 {
                println!("applies     {}", describe(r));
            }
        }
    }
    if candidates.is_empty() {
        ExitCode::from(Exit::Refused)
    } else {
        ExitCode::SUCCESS
    }
}
