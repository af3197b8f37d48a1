//! One repository's verified trust data, changed and published: the roles' new
//! versions signed with our keys, the snapshot here when its key is ours, one upload.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use codes::ReasonCode;
use key_store::{KeyDir, SigningKey, StateStore};
use serde_json::{json, Value};
use sha2::Digest as _;
use time::OffsetDateTime;
use trust_core::keys::PublicKey;
use trust_core::metadata::{parse_root, parse_targets, Root, Signed, TargetsRole};
use trust_core::{RepoFiles, RootAnchor, VerifiedRepo, VerifyOptions};

use crate::{
    connect, failure, rfc3339, Class, Failure, Kind, Passphrase, Target, ROLE_LIFETIME,
    ROOT_LIFETIME,
};

/// A key that signs, with the ID the role lists it under.
pub type RoleKey = (String, SigningKey);

/// A role to publish: its name, its new `signed` body, the keys that sign it.
pub type Change = (String, Value, Vec<RoleKey>);

/// One repository's verified trust data, ready to be changed and published.
pub struct Session {
    /// The repository (GUN) being written.
    pub gun: String,
    /// How its trust server is reached.
    pub fetcher: notary_client::Fetcher,
    state: StateStore,
    keys: KeyDir,
    keys_dir: PathBuf,
    passphrase: Passphrase,
    /// The metadata files as fetched (and as they will be written back).
    pub files: RepoFiles,
    /// The repository's root, verified.
    pub root: Signed<Root>,
    /// The top-level targets role, verified.
    pub top: Signed<TargetsRole>,
}

impl Session {
    /// Fetches and verifies `gun`'s trust data from the target's server.
    pub async fn open(target: &Target, gun: &str) -> Result<Session, Failure> {
        let (fetcher, state, keys) = connect(target)?;
        let (files, _) = current(&fetcher, &state, gun).await?;
        let root = parse_root("root", files.get("root").unwrap_or_default()).map_err(|e| {
            failure(
                Class::Refused,
                Kind::Reason(ReasonCode::MalformedMetadata),
                e.to_string(),
            )
        })?;
        let top =
            parse_targets("targets", files.get("targets").unwrap_or_default()).map_err(|e| {
                failure(
                    Class::Refused,
                    Kind::Reason(ReasonCode::MalformedMetadata),
                    e.to_string(),
                )
            })?;
        Ok(Session {
            gun: gun.to_owned(),
            fetcher,
            state,
            keys,
            keys_dir: target.keys_dir.clone(),
            passphrase: target.passphrase,
            files,
            root,
            top,
        })
    }

    /// The keys root.json lists for a top-level role, by the IDs it lists them under.
    pub fn root_role_keys(&self, role: &str) -> Vec<(String, PublicKey)> {
        self.root
            .body
            .roles
            .get(role)
            .map(|r| r.keyids.clone())
            .unwrap_or_default()
            .iter()
            .filter_map(|id| self.root.body.keys.get(id).map(|k| (id.clone(), k.clone())))
            .collect()
    }

    /// The keys that may sign the delegation `role`, as its parent lists them; with
    /// `target`, also checks that the delegation's paths allow it.
    pub fn delegation_keys(
        &self,
        role: &str,
        target: Option<&str>,
    ) -> Result<Vec<(String, PublicKey)>, Failure> {
        let parent = delegating_role(&self.files, role)?;
        let d = parent
            .body
            .delegations
            .iter()
            .find(|d| d.name == role)
            .ok_or_else(|| {
                failure(
                    Class::Refused,
                    Kind::UnknownRole,
                    format!("{} has no role {role}", self.gun),
                )
            })?;
        if let Some(t) = target {
            if d.uses_hash_prefixes || !d.paths.iter().any(|p| t.starts_with(p.as_str())) {
                return Err(failure(
                    Class::Refused,
                    Kind::OutsideDelegatedPaths,
                    format!("{role} may not sign {t:?}: its paths are {:?}", d.paths),
                ));
            }
        }
        Ok(d.keys
            .keyids
            .iter()
            .filter_map(|id| {
                parent
                    .body
                    .delegation_keys
                    .get(id)
                    .map(|k| (id.clone(), k.clone()))
            })
            .collect())
    }

    /// Whether we hold one of `authorised`.
    pub fn holds_any(&self, authorised: &[(String, PublicKey)]) -> bool {
        stored_match(&stored_ids(&self.keys), authorised).is_some()
    }

    /// Our stored file for one of `authorised`: (ID the role lists, the file).
    pub fn stored_file_of(&self, authorised: &[(String, PublicKey)]) -> Option<(String, PathBuf)> {
        let entries = self.keys.list().ok()?;
        let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
        let (listed, id) = stored_match(&ids, authorised)?;
        entries
            .into_iter()
            .find(|e| e.id == id)
            .map(|e| (listed, e.path))
    }

    /// One of our keys among `authorised`, decrypted, with the ID the role lists.
    pub fn key_for(
        &self,
        authorised: &[(String, PublicKey)],
        role: &str,
    ) -> Result<RoleKey, Failure> {
        signing_key(
            &self.keys,
            &self.keys_dir,
            self.passphrase,
            authorised,
            role,
            &self.gun,
        )
    }

    /// The `signed` object of `role` now, or an empty targets role for a delegation
    /// nobody has signed into yet.
    pub fn body_of(&self, role: &str) -> Result<Value, Failure> {
        match self.files.get(role) {
            Some(b) => signed_body(b),
            None => Ok(
                json!({"_type": "Targets", "delegations": {"keys": {}, "roles": []}, "targets": {}, "version": 0}),
            ),
        }
    }

    /// Publishes the new versions of `changed` (role, new `signed` body, keys): signs
    /// each, adds a snapshot when its key is ours, uploads. Returns whether the snapshot
    /// was signed here.
    pub async fn publish(&self, changed: Vec<Change>) -> Result<bool, Failure> {
        self.publish_with(changed, None).await
    }

    /// [`Session::publish`], with the snapshot signed by `snapshot_key` when given (a
    /// snapshot key being rotated in).
    pub async fn publish_with(
        &self,
        changed: Vec<Change>,
        snapshot_key: Option<RoleKey>,
    ) -> Result<bool, Failure> {
        let now = OffsetDateTime::now_utc();
        let mut upload = Vec::new();
        for (role, mut body, keys) in changed {
            next_version(&mut body, now, &role);
            let keys: Vec<(&str, &SigningKey)> =
                keys.iter().map(|(id, k)| (id.as_str(), k)).collect();
            upload.push((role, envelope(&body, &keys)?));
        }
        let snapshot_keys = self.root_role_keys("snapshot");
        let snap_key = match snapshot_key {
            Some(k) => Some(k),
            None if self.holds_any(&snapshot_keys) => {
                Some(self.key_for(&snapshot_keys, "snapshot")?)
            }
            None => None,
        };
        let ours = snap_key.is_some();
        if let Some(snap_key) = snap_key {
            let mut snap = signed_body(self.files.get("snapshot").unwrap_or_default())?;
            for (role, file) in &upload {
                snap["meta"][role] = json!({
                    "hashes": {
                        "sha256": base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(file)),
                        "sha512": base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(file)),
                    },
                    "length": file.len(),
                });
            }
            next_version(&mut snap, now, "snapshot");
            upload.push((
                "snapshot".to_owned(),
                envelope(&snap, &[(snap_key.0.as_str(), &snap_key.1)])?,
            ));
        }
        if let Err(mut f) = upload_all(&self.fetcher, &self.gun, &upload).await {
            // A concurrent publish, not a refusal of ours: every publish makes a new
            // snapshot.
            if f.kind == Kind::UploadRefused {
                if let Ok(now_files) = self.fetcher.fetch(&self.gun, None).await {
                    if now_files.get("snapshot") != self.files.get("snapshot") {
                        f.kind = Kind::ConcurrentPublish;
                        f.message = format!(
                            "someone else published to {} while this run was preparing its update; nothing of this run was published — run it again ({})",
                            self.gun, f.message
                        );
                    }
                }
            }
            return Err(f);
        }
        Ok(ours)
    }

    /// The trust data as nodes will now read it, verified (and recorded as seen).
    pub async fn read_back(&self) -> Result<VerifiedRepo, Failure> {
        current(&self.fetcher, &self.state, &self.gun)
            .await
            .map(|(_, repo)| repo)
    }
}

pub(crate) fn next_version(body: &mut Value, now: OffsetDateTime, role: &str) {
    let v = body["version"].as_u64().unwrap_or(0);
    body["version"] = json!(v + 1);
    let lifetime = if role == "root" {
        ROOT_LIFETIME
    } else {
        ROLE_LIFETIME
    };
    body["expires"] = json!(rfc3339(now + lifetime));
}

/// The repository's trust data, fetched and verified against the signer's own state.
async fn current(
    fetcher: &notary_client::Fetcher,
    state: &StateStore,
    gun: &str,
) -> Result<(RepoFiles, VerifiedRepo), Failure> {
    let prior = state
        .prior(gun, OffsetDateTime::now_utc())
        .map_err(|e| match e {
            // A clock behind the last verification makes every expiry check meaningless.
            key_store::Error::ClockWentBackwards { .. } => failure(
                Class::Refused,
                Kind::Reason(ReasonCode::ClockWentBackwards),
                e.to_string(),
            ),
            e => failure(
                Class::Usage,
                Kind::Reason(e.reason_code().unwrap_or(ReasonCode::StateUnreadable)),
                e.to_string(),
            ),
        })?;
    let files = fetcher
        .fetch(gun, prior.trusted_root())
        .await
        .map_err(|e| match e {
            notary_client::FetchError::NotFound { .. } => failure(
                Class::Refused,
                Kind::Reason(ReasonCode::NoTrustData),
                format!("{e}; `pullguard sign {gun}:TAG` initialises it with its first tag"),
            ),
            other => failure(
                Class::Unreachable,
                Kind::Reason(ReasonCode::TrustServerUnreachable),
                other.to_string(),
            ),
        })?;
    let opts = VerifyOptions::new(gun, prior.now, RootAnchor::FirstUse);
    let repo = state
        .verify_and_record(&prior, &files, opts)
        .map(|v| v.repo)
        .map_err(|e| match e {
            key_store::Error::Untrusted(e) => failure(
                Class::Refused,
                Kind::Trust(e.reason()),
                format!(
                    "the current trust data of {gun} does not verify, so nothing was signed: {e}"
                ),
            ),
            e => failure(
                Class::Usage,
                Kind::Reason(ReasonCode::StateUnwritable),
                e.to_string(),
            ),
        })?;
    Ok((files, repo))
}

/// The (verified) role that delegates to `role`.
fn delegating_role(
    files: &RepoFiles,
    role: &str,
) -> Result<trust_core::metadata::Signed<trust_core::metadata::TargetsRole>, Failure> {
    let parent = role.rsplit_once('/').map_or("targets", |(p, _)| p);
    let bytes = files.get(parent).ok_or_else(|| {
        failure(
            Class::Refused,
            Kind::UnknownRole,
            format!("{parent} (the parent of {role}) has no trust data"),
        )
    })?;
    parse_targets(parent, bytes).map_err(|e| {
        failure(
            Class::Refused,
            Kind::Reason(ReasonCode::MalformedMetadata),
            e.to_string(),
        )
    })
}

/// One of our keys that may sign, with the ID the role lists it under. Notary lists
/// delegation keys as certificates but names private keys by the bare public key's ID.
fn signing_key(
    keys: &KeyDir,
    keys_dir: &Path,
    passphrase: Passphrase,
    authorised: &[(String, trust_core::keys::PublicKey)],
    role: &str,
    gun: &str,
) -> Result<(String, SigningKey), Failure> {
    let stored: Vec<String> = keys
        .list()
        .map_err(|e| failure(Class::Usage, Kind::KeysUnreadable, e.to_string()))?
        .into_iter()
        .map(|k| k.id)
        .collect();
    if let Some((listed, id)) = stored_match(&stored, authorised) {
        let env = if role == "root" {
            "PULLGUARD_ROOT_PASSPHRASE"
        } else {
            "PULLGUARD_REPOSITORY_PASSPHRASE"
        };
        let pass = passphrase(
            env,
            &format!(
                "Passphrase for the {role} key {}: ",
                &id[..12.min(id.len())]
            ),
        )
        .map_err(|e| failure(Class::Usage, Kind::NoPassphrase, e))?;
        let key = keys.load(&id, &pass).map_err(|e| {
            failure(
                Class::Usage,
                Kind::WrongPassphrase,
                format!(
                    "{e} (the passphrase comes from {env} or the terminal); nothing was published"
                ),
            )
        })?;
        return Ok((listed, key));
    }
    Err(failure(Class::Usage,
        Kind::MissingKey,
        format!(
            "no key in {} may sign {role} of {gun} (it accepts key IDs {}); import it with `pullguard keys import`, or have its holder sign, or add yours with `pullguard signer add`",
            keys_dir.join("private").display(),
            authorised.iter().map(|(id, _)| &id[..12.min(id.len())]).collect::<Vec<_>>().join(", ")
        ),
    ))
}

/// The first of `authorised` we hold: (ID the role lists, ID of our stored file). Notary
/// lists root and delegation keys as certificates but names private keys by the bare
/// public key's ID.
fn stored_match(stored: &[String], authorised: &[(String, PublicKey)]) -> Option<(String, String)> {
    authorised.iter().find_map(|(listed, public)| {
        let bare = public
            .cert()
            .map(|c| trust_core::keys::key_id("ecdsa", &c.spki));
        [Some(listed.clone()), bare]
            .into_iter()
            .flatten()
            .find(|id| stored.contains(id))
            .map(|id| (listed.clone(), id))
    })
}

fn stored_ids(keys: &KeyDir) -> Vec<String> {
    keys.list()
        .map(|l| l.into_iter().map(|k| k.id).collect())
        .unwrap_or_default()
}

/// The `signed` object of a role file.
pub fn signed_body(bytes: &[u8]) -> Result<Value, Failure> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| {
        failure(
            Class::Refused,
            Kind::Reason(ReasonCode::MalformedMetadata),
            e.to_string(),
        )
    })?;
    match v.get("signed") {
        Some(s) if s.is_object() => Ok(s.clone()),
        _ => Err(failure(
            Class::Refused,
            Kind::Reason(ReasonCode::MalformedMetadata),
            "a role file without a signed object",
        )),
    }
}

/// `{"signed": …, "signatures": […]}` with `signed` in canonical form, signed by `keys`.
pub(crate) fn envelope(body: &Value, keys: &[(&str, &SigningKey)]) -> Result<Vec<u8>, Failure> {
    let canonical =
        trust_core::canonical::canonicalize(&serde_json::to_vec(body).map_err(|e| {
            failure(
                Class::Usage,
                Kind::Reason(ReasonCode::InternalError),
                e.to_string(),
            )
        })?)
        .map_err(|e| {
            failure(
                Class::Usage,
                Kind::Reason(ReasonCode::InternalError),
                e.to_string(),
            )
        })?;
    let signatures: Vec<Value> = keys
        .iter()
        .map(|(id, key)| {
            let (method, sig) = key.sign(&canonical);
            json!({"keyid": id, "method": method, "sig": base64::engine::general_purpose::STANDARD.encode(sig)})
        })
        .collect();
    let mut out = b"{\"signed\":".to_vec();
    out.extend_from_slice(&canonical);
    out.extend_from_slice(b",\"signatures\":");
    out.extend_from_slice(&serde_json::to_vec(&signatures).map_err(|e| {
        failure(
            Class::Usage,
            Kind::Reason(ReasonCode::InternalError),
            e.to_string(),
        )
    })?);
    out.push(b'}');
    Ok(out)
}

/// One multipart POST of every changed role: notary-server applies all or nothing.
pub(crate) async fn upload_all(
    fetcher: &notary_client::Fetcher,
    gun: &str,
    files: &[(String, Vec<u8>)],
) -> Result<(), Failure> {
    fetcher.upload(gun, files).await.map_err(|e| match e {
        notary_client::FetchError::Refused { .. } => {
            failure(Class::Refused, Kind::UploadRefused, e.to_string())
        }
        _ => failure(
            Class::Unreachable,
            Kind::Reason(ReasonCode::TrustServerUnreachable),
            e.to_string(),
        ),
    })
}
