//! Test-only helpers shared by several crates' suites: Notary-format repositories signed
//! with keys the tests control (this module), and the differential suites' shared parts
//! ([`differential`]: the Go peers, the table of deliberate differences, the tally).
//!
//! The positive path of pullguard is tested against data from the real notary-server
//! (`tests/fixtures/notary-real`). Some negative cases need metadata that is correctly
//! signed and still bad: an expired role, a rotation gap, a threshold of two with one
//! signature. Only the key holder can make those, so the tests hold the keys. The
//! format written here is Notary's (see the real fixtures), and signatures are made over
//! the canonical JSON that trust-core checks; the key-ID and canonical-form rules are
//! checked independently against the real fixtures.

#![deny(missing_docs)]

pub mod differential;

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256, Sha512};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use trust_core::RepoFiles;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Formats a time as Notary does.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

#[derive(Clone)]
enum Secret {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

/// A signing key with its public form.
#[derive(Clone)]
pub struct TestKey {
    secret: Secret,
    /// `ed25519` or `ecdsa`.
    pub keytype: &'static str,
    /// `keyval.public`, decoded.
    pub public: Vec<u8>,
    /// Key ID.
    pub id: String,
}

impl TestKey {
    /// A deterministic Ed25519 key.
    pub fn ed25519(seed: u8) -> TestKey {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let public = sk.verifying_key().to_bytes().to_vec();
        TestKey {
            id: trust_core::keys::key_id("ed25519", &public),
            secret: Secret::Ed25519(sk),
            keytype: "ed25519",
            public,
        }
    }

    /// A deterministic P-256 key.
    pub fn p256(seed: u8) -> TestKey {
        use p256::pkcs8::EncodePublicKey as _;
        let mut bytes = [0u8; 32];
        bytes[31] = seed.max(1);
        bytes[0] = 0x42;
        let sk = p256::ecdsa::SigningKey::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("p256 seed: {e}"));
        let public = sk
            .verifying_key()
            .to_public_key_der()
            .unwrap_or_else(|e| panic!("p256 der: {e}"))
            .as_bytes()
            .to_vec();
        TestKey {
            id: trust_core::keys::key_id("ecdsa", &public),
            secret: Secret::P256(sk),
            keytype: "ecdsa",
            public,
        }
    }

    /// The same P-256 key as [`TestKey::p256`] under another key ID: its SPKI written
    /// with the point compressed (a second listing of one key).
    pub fn p256_compressed(seed: u8) -> TestKey {
        let key = TestKey::p256(seed);
        let Secret::P256(sk) = &key.secret else {
            unreachable!("p256 makes P-256 keys")
        };
        let point = sk.verifying_key().to_encoded_point(true);
        // SubjectPublicKeyInfo: id-ecPublicKey with prime256v1, then the point.
        let mut algorithm = vec![
            0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
        ];
        algorithm.extend([0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]);
        let mut bits = vec![0x03, (point.len() + 1) as u8, 0x00];
        bits.extend_from_slice(point.as_bytes());
        let mut public = vec![0x30, (algorithm.len() + bits.len()) as u8];
        public.extend(algorithm);
        public.extend(bits);
        TestKey {
            id: trust_core::keys::key_id("ecdsa", &public),
            secret: key.secret,
            keytype: "ecdsa",
            public,
        }
    }

    /// The key as metadata lists it.
    pub fn json(&self) -> Value {
        json!({"keytype": self.keytype, "keyval": {"private": null, "public": b64(&self.public)}})
    }

    /// A signature object over `msg`.
    pub fn sign(&self, msg: &[u8]) -> Value {
        let (method, sig) = match &self.secret {
            Secret::Ed25519(sk) => {
                use ed25519_dalek::Signer as _;
                ("eddsa", sk.sign(msg).to_bytes().to_vec())
            }
            Secret::P256(sk) => {
                use p256::ecdsa::signature::Signer as _;
                let sig: p256::ecdsa::Signature = sk.sign(msg);
                ("ecdsa", sig.to_bytes().to_vec())
            }
        };
        json!({"keyid": self.id, "method": method, "sig": b64(&sig)})
    }
}

/// The canonical bytes a signature over `signed` covers.
pub fn canonical(signed: &Value) -> Vec<u8> {
    let bytes = serde_json::to_vec(signed).unwrap_or_default();
    trust_core::canonical::canonicalize(&bytes).unwrap_or_else(|e| panic!("canonical: {e}"))
}

/// An envelope signed by `keys`.
pub fn envelope(signed: &Value, keys: &[&TestKey]) -> Vec<u8> {
    let msg = canonical(signed);
    let sigs: Vec<Value> = keys.iter().map(|k| k.sign(&msg)).collect();
    envelope_with(signed, sigs)
}

/// An envelope with the given signature objects.
pub fn envelope_with(signed: &Value, signatures: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({"signed": signed, "signatures": signatures})).unwrap_or_default()
}

/// Length and hashes of a file, as a parent lists it.
pub fn file_meta(bytes: &[u8]) -> Value {
    json!({"length": bytes.len(), "hashes": {"sha256": b64(&Sha256::digest(bytes)), "sha512": b64(&Sha512::digest(bytes))}})
}

/// A delegation and what it signs.
#[derive(Clone)]
pub struct Delegation {
    /// Role name.
    pub name: String,
    /// Its keys.
    pub keys: Vec<TestKey>,
    /// Keys that sign its file (default: all of `keys`).
    pub signers: Option<Vec<TestKey>>,
    /// Threshold.
    pub threshold: u64,
    /// Path prefixes.
    pub paths: Vec<String>,
    /// Targets: name → content.
    pub targets: BTreeMap<String, Vec<u8>>,
    /// Version.
    pub version: u64,
    /// Expiry.
    pub expires: OffsetDateTime,
}

/// A whole repository; change fields, then [`Repo::files`] signs everything anew.
#[derive(Clone)]
pub struct Repo {
    /// Repository name.
    pub gun: String,
    /// Root keys of the current root.
    pub root_keys: Vec<TestKey>,
    /// Keys that sign the current root (default: all of `root_keys`).
    pub root_signers: Option<Vec<TestKey>>,
    /// Root threshold.
    pub root_threshold: u64,
    /// Targets key.
    pub targets_key: TestKey,
    /// Snapshot key.
    pub snapshot_key: TestKey,
    /// Timestamp key.
    pub timestamp_key: TestKey,
    /// Keys that sign targets.json (default: the targets key).
    pub targets_signers: Option<Vec<TestKey>>,
    /// Versions by role.
    pub versions: BTreeMap<&'static str, u64>,
    /// Expiry by role.
    pub expires: BTreeMap<&'static str, OffsetDateTime>,
    /// Targets in targets.json: name → content.
    pub targets: BTreeMap<String, Vec<u8>>,
    /// Delegations of targets.json.
    pub delegations: Vec<Delegation>,
    /// Earlier roots by version, as published.
    pub root_history: BTreeMap<u64, Vec<u8>>,
}

/// The content of a stand-in manifest for `tag`.
pub fn manifest(tag: &str) -> Vec<u8> {
    format!("{{\"schemaVersion\":2,\"tag\":\"{tag}\"}}").into_bytes()
}

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Repo {
    /// A repository signed with ed25519 keys, tag `v1` in targets, valid around `now`
    /// (timestamp for 14 days from `now`, other roles for a year).
    pub fn new(gun: &str, now: OffsetDateTime) -> Repo {
        let mut expires = BTreeMap::new();
        for role in ["root", "targets", "snapshot"] {
            expires.insert(role, now + Duration::days(365));
        }
        expires.insert("timestamp", now + Duration::days(14));
        let versions = ["root", "targets", "snapshot", "timestamp"]
            .into_iter()
            .map(|r| (r, 1))
            .collect();
        let mut targets = BTreeMap::new();
        targets.insert("v1".to_owned(), manifest("v1"));
        Repo {
            gun: gun.to_owned(),
            root_keys: vec![TestKey::ed25519(1)],
            root_signers: None,
            root_threshold: 1,
            targets_key: TestKey::p256(2),
            snapshot_key: TestKey::ed25519(3),
            timestamp_key: TestKey::p256(4),
            targets_signers: None,
            versions,
            expires,
            targets,
            delegations: Vec::new(),
            root_history: BTreeMap::new(),
        }
    }

    /// Adds a delegation directly under `targets` with one key, all paths.
    pub fn delegate(&mut self, name: &str, key: TestKey, now: OffsetDateTime) -> &mut Delegation {
        self.delegations.push(Delegation {
            name: name.to_owned(),
            keys: vec![key],
            signers: None,
            threshold: 1,
            paths: vec![String::new()],
            targets: BTreeMap::new(),
            version: 1,
            expires: now + Duration::days(365),
        });
        let last = self.delegations.len() - 1;
        &mut self.delegations[last]
    }

    fn expires(&self, role: &str) -> String {
        rfc3339(self.expires[role])
    }

    /// The `signed` object of the current root.
    pub fn root_signed(&self) -> Value {
        let mut keys = serde_json::Map::new();
        for k in self.root_keys.iter().chain([
            &self.targets_key,
            &self.snapshot_key,
            &self.timestamp_key,
        ]) {
            keys.insert(k.id.clone(), k.json());
        }
        let ids = |ks: &[&TestKey]| ks.iter().map(|k| k.id.clone()).collect::<Vec<_>>();
        json!({
            "_type": "Root",
            "consistent_snapshot": false,
            "expires": self.expires("root"),
            "keys": keys,
            "roles": {
                "root": {"keyids": ids(&self.root_keys.iter().collect::<Vec<_>>()), "threshold": self.root_threshold},
                "targets": {"keyids": ids(&[&self.targets_key]), "threshold": 1},
                "snapshot": {"keyids": ids(&[&self.snapshot_key]), "threshold": 1},
                "timestamp": {"keyids": ids(&[&self.timestamp_key]), "threshold": 1},
            },
            "version": self.versions["root"],
        })
    }

    /// The current root.json.
    pub fn root_bytes(&self) -> Vec<u8> {
        let signers: Vec<&TestKey> = match &self.root_signers {
            Some(s) => s.iter().collect(),
            None => self.root_keys.iter().collect(),
        };
        envelope(&self.root_signed(), &signers)
    }

    /// Publishes a new root version with `new_keys`, signed by the old and new root keys.
    pub fn rotate_root(&mut self, new_keys: Vec<TestKey>) {
        let old = self.root_bytes();
        self.root_history.insert(self.versions["root"], old);
        let old_keys = std::mem::replace(&mut self.root_keys, new_keys);
        if let Some(v) = self.versions.get_mut("root") {
            *v += 1;
        }
        let mut signers = old_keys;
        signers.extend(self.root_keys.iter().cloned());
        self.root_signers = Some(signers);
    }

    fn targets_map(targets: &BTreeMap<String, Vec<u8>>) -> Value {
        targets
            .iter()
            .map(|(name, content)| (name.clone(), file_meta(content)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }

    /// The bytes of delegation `d`.
    pub fn delegation_bytes(d: &Delegation) -> Vec<u8> {
        let signed = json!({
            "_type": "Targets",
            "delegations": {"keys": {}, "roles": []},
            "expires": rfc3339(d.expires),
            "targets": Self::targets_map(&d.targets),
            "version": d.version,
        });
        let signers: Vec<&TestKey> = d.signers.as_ref().unwrap_or(&d.keys).iter().collect();
        envelope(&signed, &signers)
    }

    /// targets.json.
    pub fn targets_bytes(&self) -> Vec<u8> {
        let mut keys = serde_json::Map::new();
        let mut roles = Vec::new();
        for d in &self.delegations {
            for k in &d.keys {
                keys.insert(k.id.clone(), k.json());
            }
            roles.push(json!({
                "name": d.name,
                "keyids": d.keys.iter().map(|k| k.id.clone()).collect::<Vec<_>>(),
                "threshold": d.threshold,
                "paths": d.paths,
            }));
        }
        let signed = json!({
            "_type": "Targets",
            "delegations": {"keys": keys, "roles": roles},
            "expires": self.expires("targets"),
            "targets": Self::targets_map(&self.targets),
            "version": self.versions["targets"],
        });
        let signers: Vec<&TestKey> = match &self.targets_signers {
            Some(s) => s.iter().collect(),
            None => vec![&self.targets_key],
        };
        envelope(&signed, &signers)
    }

    /// snapshot.json over the given files.
    pub fn snapshot_bytes(
        &self,
        root: &[u8],
        targets: &[u8],
        delegations: &BTreeMap<String, Vec<u8>>,
    ) -> Vec<u8> {
        let mut meta = serde_json::Map::new();
        meta.insert("root".into(), file_meta(root));
        meta.insert("targets".into(), file_meta(targets));
        for (name, bytes) in delegations {
            meta.insert(name.clone(), file_meta(bytes));
        }
        let signed = json!({"_type": "Snapshot", "expires": self.expires("snapshot"), "meta": meta, "version": self.versions["snapshot"]});
        envelope(&signed, &[&self.snapshot_key])
    }

    /// timestamp.json over `snapshot`.
    pub fn timestamp_bytes(&self, snapshot: &[u8]) -> Vec<u8> {
        let signed = json!({"_type": "Timestamp", "expires": self.expires("timestamp"), "meta": {"snapshot": file_meta(snapshot)}, "version": self.versions["timestamp"]});
        envelope(&signed, &[&self.timestamp_key])
    }

    /// Every file, consistently signed.
    pub fn files(&self) -> RepoFiles {
        let root = self.root_bytes();
        let targets = self.targets_bytes();
        let delegations: BTreeMap<String, Vec<u8>> = self
            .delegations
            .iter()
            .map(|d| (d.name.clone(), Self::delegation_bytes(d)))
            .collect();
        let snapshot = self.snapshot_bytes(&root, &targets, &delegations);
        let timestamp = self.timestamp_bytes(&snapshot);
        let mut files = RepoFiles::new();
        for (v, bytes) in &self.root_history {
            files.insert(format!("{v}.root"), bytes.clone());
        }
        files.insert(format!("{}.root", self.versions["root"]), root.clone());
        files.insert("root", root);
        files.insert("targets", targets);
        files.insert("snapshot", snapshot);
        files.insert("timestamp", timestamp);
        for (name, bytes) in delegations {
            files.insert(name, bytes);
        }
        files
    }
}
