//! The differential suites' shared parts: where a Go peer built into the tools cache is,
//! the table of deliberate differences a doc keeps, and the tally that fails on every
//! disagreement the table does not explain.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A Go peer's path, as scripts/lib-tools.sh names it in the tools cache (`var` is the
/// variable `go_tools_env` exports, e.g. `NOTATION_PEER`).
///
/// # Panics
/// When the peer has not been built (scripts/test builds it).
pub fn peer(var: &str) -> PathBuf {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            ". {}/scripts/lib-tools.sh; go_tools_env; printf %s \"${var}\"",
            repo_root().display()
        ))
        .output()
        .unwrap_or_else(|e| panic!("bash: {e}"));
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).into_owned());
    assert!(
        p.is_file(),
        "{} is missing: run scripts/test (it builds the Go peers)",
        p.display()
    );
    p
}

/// The seed and count of a run: fixed in CI, chosen by scripts/differential.
pub fn seed_and_count() -> (String, String) {
    let get = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    (
        get("PULLGUARD_DIFFERENTIAL_SEED", "1"),
        get("PULLGUARD_DIFFERENTIAL_COUNT", "200"),
    )
}

/// A documented difference: which check, the generator label that causes it, and
/// whether pullguard refuses what the peer accepts or the other way round.
pub struct Known {
    /// The check (a column of the differences table).
    pub check: String,
    /// The generator's label for the input.
    pub label: String,
    /// pullguard refuses what the peer accepts (else the other way round).
    pub pullguard_refuses: bool,
}

/// The table in `doc` (relative to the repository): `| check | label | pullguard | why |`
/// rows whose third cell is `refuses` or `accepts`.
///
/// # Panics
/// When the doc is missing, or a row gives no reason.
pub fn known(doc: &str) -> Vec<Known> {
    let text =
        std::fs::read_to_string(repo_root().join(doc)).unwrap_or_else(|e| panic!("{doc}: {e}"));
    let rows: Vec<Known> = text
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let [_, check, label, verdict, why, ..] = cells.as_slice() else {
                return None;
            };
            let pullguard_refuses = match *verdict {
                "refuses" => true,
                "accepts" => false,
                _ => return None,
            };
            assert!(!why.is_empty(), "a row without its reason: {l}");
            Some(Known {
                check: (*check).to_owned(),
                label: label.trim_matches('`').to_owned(),
                pullguard_refuses,
            })
        })
        .collect();
    assert!(!rows.is_empty(), "{doc} has no table of differences");
    rows
}

/// Counts judgements and collects the disagreements no row of the table explains.
pub struct Tally {
    peer: &'static str,
    doc: &'static str,
    known: Vec<Known>,
    cases: usize,
    agreed: usize,
    explained: BTreeMap<String, usize>,
    unexplained: Vec<String>,
    /// Per label: (judgements, peer accepted).
    labels: BTreeMap<String, (usize, usize)>,
}

impl Tally {
    /// A tally against `peer` (its name in messages), explained by the table in `doc`.
    pub fn new(peer: &'static str, doc: &'static str) -> Tally {
        Tally {
            peer,
            doc,
            known: known(doc),
            cases: 0,
            agreed: 0,
            explained: BTreeMap::new(),
            unexplained: Vec::new(),
            labels: BTreeMap::new(),
        }
    }

    /// One judgement of case `id` by `check`: ours (`Err` with our reason) and theirs.
    pub fn judge(
        &mut self,
        id: &str,
        check: &str,
        labels: &[String],
        ours: Result<(), String>,
        theirs: bool,
        their_reason: &str,
    ) {
        self.cases += 1;
        for l in labels {
            let e = self.labels.entry(format!("{check}: {l}")).or_default();
            e.0 += 1;
            e.1 += usize::from(theirs);
        }
        if ours.is_ok() == theirs {
            self.agreed += 1;
            return;
        }
        let ours_ok = ours.is_ok();
        match self.known.iter().find(|k| {
            k.check == check && k.pullguard_refuses != ours_ok && labels.contains(&k.label)
        }) {
            Some(k) => {
                *self
                    .explained
                    .entry(format!("{check}: {}", k.label))
                    .or_default() += 1
            }
            None => self.unexplained.push(format!(
                "{id} {check}: pullguard {}, {} {} ({their_reason}; ours: {}); labels {labels:?}",
                if ours_ok { "accepts" } else { "refuses" },
                self.peer,
                if theirs { "accepts" } else { "refuses" },
                ours.err().unwrap_or_default(),
            )),
        }
    }

    /// Prints the summary and fails on unexplained disagreements, or when the generator
    /// made mostly disagreements (a broken generator must not pass quietly).
    ///
    /// # Panics
    /// As said.
    pub fn finish(self, seed: &str) -> BTreeMap<String, (usize, usize)> {
        println!(
            "differential (seed {seed}): {} judgements, {} agree, {} listed differences {:?}, {} unexplained",
            self.cases,
            self.agreed,
            self.cases - self.agreed - self.unexplained.len(),
            self.explained,
            self.unexplained.len()
        );
        for (label, (n, accepted)) in &self.labels {
            println!("{label}: {n} judged, {} accepts {accepted}", self.peer);
        }
        assert!(
            self.unexplained.is_empty(),
            "{} disagreements with {} not listed in {}:\n{}",
            self.unexplained.len(),
            self.peer,
            self.doc,
            self.unexplained.join("\n")
        );
        assert!(
            self.agreed * 2 > self.cases,
            "the generator made mostly disagreements"
        );
        self.labels
    }
}

/// A cosign classic signature manifest listing one simple-signing layer over `payload`
/// with `annotations` (as a registry would serve the `sha256-<hex>.sig` tag).
pub fn cosign_classic_manifest(payload: &[u8], annotations: &serde_json::Value) -> Vec<u8> {
    use sha2::Digest as _;
    let sha = |b: &[u8]| format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)));
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha(b"{}"),
            "size": 2
        },
        "layers": [{
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "digest": sha(payload),
            "size": payload.len(),
            "annotations": annotations,
        }]
    }))
    .unwrap_or_default()
}
