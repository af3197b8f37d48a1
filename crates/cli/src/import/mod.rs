//! `pullguard policy import --from SOURCE`: the policies of admission controllers turned
//! into pullguard rules, printed as TOML for the operator to review. Each source's own
//! meaning is kept exactly where pullguard can say the same; everything else is refused
//! with its reason (nothing is printed or written then), and where the source is laxer
//! than it reads the printed rule says so. One module per source; this one holds what
//! they share: reading the documents, the rules' text, the checks across rules.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Deserialize;

use crate::exit::{fail, Exit};

mod containers;
mod kyverno;
mod policy_controller;

pub const EXAMPLES: &str = "Examples:
  pullguard policy import --from policy-controller cip.yaml --key-dir /etc/pullguard/keys/cosign \\
      >> /etc/pullguard/pullguard.toml
  kubectl get clusterimagepolicies -o yaml > cips.yaml && pullguard policy import --from policy-controller cips.yaml
  pullguard policy import --from containers-policy /etc/containers/policy.json --key-dir /etc/pullguard/keys/cosign
  kubectl get clusterpolicies -o yaml > kyverno.yaml && pullguard policy import --from kyverno kyverno.yaml --key-dir /etc/pullguard/keys

Exit codes: 0 printed, 1 something cannot be expressed (every reason listed, nothing printed or written), 2 unreadable files.";

/// Inputs larger than this are refused (a policy, not a data set).
const MAX_INPUT: u64 = 4 << 20;
/// Documents in one input.
const MAX_DOCUMENTS: usize = 1000;

/// Where the imported documents come from.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Source {
    /// sigstore policy-controller ClusterImagePolicy (policy.sigstore.dev v1alpha1/v1beta1).
    PolicyController,
    /// containers-policy.json (podman, skopeo, CRI-O): its docker transport.
    ContainersPolicy,
    /// Kyverno ClusterPolicy verifyImages rules (kyverno.io/v1, v2beta1).
    Kyverno,
}

/// The printed rules and the key files to write.
pub struct Imported {
    pub toml: String,
    /// `(path, PEM)`: written only when nothing was refused.
    pub keys: Vec<(PathBuf, String)>,
}

pub fn run(source: Source, files: &[PathBuf], key_dir: Option<&Path>) -> ExitCode {
    let mut texts = Vec::new();
    for f in files {
        let text = std::fs::metadata(f)
            .map_err(|e| e.to_string())
            .and_then(|m| {
                if m.len() > MAX_INPUT {
                    Err(format!("larger than {} MiB", MAX_INPUT >> 20))
                } else {
                    std::fs::read_to_string(f).map_err(|e| e.to_string())
                }
            });
        match text {
            Ok(t) => texts.push((f.display().to_string(), t)),
            Err(e) => {
                return fail(
                    Exit::Usage,
                    false,
                    "unreadable",
                    &format!("{}: {e}", f.display()),
                )
            }
        }
    }
    let imported = match source {
        Source::PolicyController => policy_controller::import(&texts, key_dir),
        Source::ContainersPolicy => containers::import(&texts, key_dir),
        Source::Kyverno => kyverno::import(&texts, key_dir),
    };
    match imported {
        Ok(imported) => {
            for (path, pem) in &imported.keys {
                let written = path
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| std::fs::write(path, pem));
                if let Err(e) = written {
                    return fail(
                        Exit::Usage,
                        false,
                        "unwritable",
                        &format!("cannot write {}: {e}", path.display()),
                    );
                }
            }
            print!("{}", imported.toml);
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for p in &problems {
                eprintln!("pullguard: {p}");
            }
            eprintln!(
                "pullguard: nothing imported ({}); fix the source or write those rules by hand",
                api::plural(u64::try_from(problems.len()).unwrap_or(u64::MAX), "problem")
            );
            ExitCode::from(Exit::Refused)
        }
    }
}

/// A pattern a source's selector became: the pullguard glob, whether its registry part
/// is a wildcard, and a note where the meaning shifts.
pub(super) struct Pattern {
    pub glob: String,
    pub any_registry: bool,
    pub note: Option<String>,
}

/// One source policy turned into rules: one per pattern, all with the same settings.
pub(super) struct Converted {
    /// The source's kind and name, for comments and messages ("ClusterImagePolicy app").
    pub what: String,
    /// The rules' name (one per pattern: NAME-1, NAME-2, …).
    pub name: String,
    pub patterns: Vec<Pattern>,
    pub settings: Vec<String>,
    pub notes: Vec<String>,
}

/// Every YAML document of every input, `kubectl get -o yaml` Lists unwrapped:
/// `(where, value)`; unreadable documents are problems.
pub(super) fn yaml_documents(
    texts: &[(String, String)],
    problems: &mut Vec<String>,
) -> Vec<(String, serde_yaml_ng::Value)> {
    let mut out = Vec::new();
    for (file, text) in texts {
        for (n, doc) in serde_yaml_ng::Deserializer::from_str(text)
            .take(MAX_DOCUMENTS + 1)
            .enumerate()
        {
            if n == MAX_DOCUMENTS {
                problems.push(format!("{file}: more than {MAX_DOCUMENTS} documents"));
                break;
            }
            let value = match serde_yaml_ng::Value::deserialize(doc) {
                Ok(serde_yaml_ng::Value::Null) => continue, // an empty document (`---` at the end)
                Ok(v) => v,
                Err(e) => {
                    problems.push(format!("{file}: document {}: not YAML: {e}", n + 1));
                    break;
                }
            };
            let place = format!("{file}: document {}", n + 1);
            match value.get("kind").and_then(|k| k.as_str()) {
                Some(k) if k == "List" || k.ends_with("List") => {
                    let items = value.get("items").and_then(|i| i.as_sequence());
                    for (i, item) in items.into_iter().flatten().enumerate() {
                        out.push((format!("{place}, item {}", i + 1), item.clone()));
                    }
                }
                _ => out.push((place, value)),
            }
        }
    }
    out
}

/// The rules' text under `header`, or every problem. `conflict`: what to say when two
/// source policies overlap (each source says why that cannot be kept), or `None` where
/// the source itself lets the most specific one win.
pub(super) fn render(
    header: &str,
    converted: &[Converted],
    conflict: Option<&str>,
    keys: Vec<(PathBuf, String)>,
    mut problems: Vec<String>,
) -> Result<Imported, Vec<String>> {
    if let Some(why) = conflict {
        for (i, a) in converted.iter().enumerate() {
            for b in &converted[i + 1..] {
                for pa in &a.patterns {
                    for pb in &b.patterns {
                        if policy::patterns_overlap(&pa.glob, &pb.glob) == Some(true) {
                            problems.push(format!(
                                "{} and {}: their images overlap ({} and {}); {why}",
                                a.what, b.what, pa.glob, pb.glob
                            ));
                        }
                    }
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut out = String::from(header);
    let mut names = std::collections::BTreeSet::new();
    for c in converted {
        let _ = writeln!(out, "\n# {}", c.what);
        for n in &c.notes {
            let _ = writeln!(out, "# {n}");
        }
        for (j, p) in c.patterns.iter().enumerate() {
            let mut name = if c.patterns.len() > 1 {
                format!("{}-{}", c.name, j + 1)
            } else {
                c.name.clone()
            };
            // Names are unique in a policy; sources name things per namespace or file.
            let mut k = 2;
            while !names.insert(name.clone()) {
                name = format!("{}-{k}", c.name);
                k += 1;
            }
            let _ = write!(
                out,
                "[[rule]]\nname = {}\nmatch = {}\n",
                quote(&name),
                quote(&p.glob)
            );
            if let Some(n) = &p.note {
                let _ = writeln!(out, "# {n}");
            }
            if p.any_registry {
                out.push_str("any_registry = true  # the pattern's registry part is a wildcard\n");
            }
            for s in &c.settings {
                let _ = writeln!(out, "{s}");
            }
        }
    }
    // What is printed must load: a last check by the real parser.
    if let Err(e) = policy::Policy::parse(Path::new("imported"), &out) {
        return Err(vec![format!(
            "the rules printed would not load (a pullguard bug, please report): {e}"
        )]);
    }
    Ok(Imported { toml: out, keys })
}

/// A public key given inline: checked, and named where it will be written.
pub(super) fn inline_key(
    pem: &str,
    key_dir: Option<&Path>,
    file_name: String,
    keys: &mut Vec<(PathBuf, String)>,
) -> Result<String, String> {
    sigstore_core::PublicKey::from_pem(pem.as_bytes())
        .map_err(|e| format!("not a public key pullguard can use: {e}"))?;
    let dir = key_dir
        .ok_or("name where the key files go with --key-dir DIR (the rules name them there)")?;
    let path = dir.join(file_name);
    let shown = path.display().to_string();
    keys.push((path, pem.to_owned()));
    Ok(shown)
}

/// Go's unanchored match of `r` as pullguard's anchored expression: `(?s:.*)(?:r)(?s:.*)`.
/// Checked to compile under pullguard's engine (RE2 syntax both).
pub(super) fn unanchored(r: &str) -> Result<String, String> {
    let wrapped = format!("(?s:.*)(?:{r})(?s:.*)");
    sigstore_core::certs::Identity::regex(&wrapped, "")
        .map_err(|e| format!("expression {r:?} does not compile here: {e}"))?;
    Ok(wrapped)
}

pub(super) fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// A cosign rule's signer settings: keys, keyless identities, whether the log entry is
/// required, and the public-good root wherever a log or a Fulcio certificate is checked.
pub(super) fn cosign_settings(
    settings: &mut Vec<String>,
    key_files: &[String],
    identities: &[String],
    tlog: bool,
) {
    if !key_files.is_empty() {
        let quoted: Vec<String> = key_files.iter().map(|k| quote(k)).collect();
        settings.push(format!("cosign_keys = [{}]", quoted.join(", ")));
    }
    if !identities.is_empty() {
        settings.push(format!(
            "cosign_identities = [\n  {},\n]",
            identities.join(",\n  ")
        ));
    }
    settings.push(format!("cosign_tlog = {tlog}"));
    if tlog || !identities.is_empty() {
        settings.push("trusted_root = \"sigstore-public-good\"".to_owned());
    }
}

/// A TOML basic string.
pub(super) fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
