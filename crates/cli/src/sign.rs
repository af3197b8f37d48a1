//! `pullguard sign`: adds an image tag to a repository's Notary trust data and publishes
//! it, so that nodes running pullguardd accept the pull.
//!
//! The tag's digest and size come from the registry (OCI distribution API, `oci-client`,
//! credentials from the docker config file), or from `--digest` and `--size`. The current
//! trust data is fetched and verified first (trust on first use, then the rollback
//! protection of the state directory), the changed role gets a new version signed with
//! our keys, and the result is uploaded the way notary-server expects: one multipart
//! POST, which the server accepts or refuses as a whole. When the snapshot key is not
//! ours, the server signs the snapshot (and always the timestamp).
//!
//! Not yet: initialising a repository (it must exist, e.g. `notary init` + `publish`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine as _;
use key_store::{KeyDir, SigningKey, StateStore};
use serde_json::{json, Value};
use sha2::Digest as _;
use time::OffsetDateTime;
use trust_core::metadata::{parse_root, parse_targets};
use trust_core::{RepoFiles, RootAnchor, TagPolicy, VerifiedRepo, VerifyOptions};

pub const EXAMPLES: &str = "\
Examples:
  PULLGUARD_REPOSITORY_PASSPHRASE=… pullguard sign registry.example.com/team/app:1.4 \\
      --server https://notary.example.com --keys-dir ~/.pullguard/keys
  pullguard sign registry.example.com/team/app:1.4 --digest sha256:4f1c… --size 1234 --server …
  pullguard sign 127.0.0.1:5000/team/app:dev --insecure-registry 127.0.0.1:5000 --server …";

/// Target and role files are given three years, as Notary does.
const ROLE_LIFETIME: time::Duration = time::Duration::days(3 * 365);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image: REGISTRY/REPOSITORY:TAG.
    pub reference: String,
    /// The trust server (notary-server) URL.
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// CA certificate (PEM) for the trust server.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Role to sign in: default targets/releases when the repository delegates to it,
    /// else targets.
    #[arg(long)]
    pub role: Option<String>,
    /// Manifest digest, instead of asking the registry (needs --size).
    #[arg(long, value_name = "sha256:HEX", requires = "size")]
    pub digest: Option<String>,
    /// Manifest size in bytes, with --digest.
    #[arg(long, requires = "digest")]
    pub size: Option<u64>,
    /// A registry (HOST:PORT) spoken to over plain HTTP.
    #[arg(long, value_name = "HOST:PORT")]
    pub insecure_registry: Vec<String>,
    /// Keys directory (signing keys are in its private/).
    #[arg(long, value_name = "DIR", default_value = crate::keys::DEFAULT_KEYS_DIR)]
    pub keys_dir: PathBuf,
    /// The signer's own trusted-state directory: roots seen and versions, so that a
    /// server cannot roll the signer back either.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/pullguard/signer-state"
    )]
    pub state_dir: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Why signing failed; each says what to do.
#[derive(Debug)]
struct Failure {
    code: u8,
    kind: &'static str,
    message: String,
}

fn failure(code: u8, kind: &'static str, message: impl Into<String>) -> Failure {
    Failure {
        code,
        kind,
        message: message.into(),
    }
}

pub fn run(args: &Args) -> ExitCode {
    let outcome = crate::daemon_client::block_on(sign(args))
        .unwrap_or_else(|e| Err(failure(2, "internal_error", e)));
    match outcome {
        Ok(done) => {
            if args.json {
                println!("{done}");
            } else {
                println!(
                    "signed {}:{} = {} ({} bytes) in {}, version {}; published to {}",
                    done["repository"].as_str().unwrap_or_default(),
                    done["tag"].as_str().unwrap_or_default(),
                    done["digest"].as_str().unwrap_or_default(),
                    done["size"],
                    done["role"].as_str().unwrap_or_default(),
                    done["version"],
                    args.server
                );
            }
            ExitCode::SUCCESS
        }
        Err(f) => {
            if args.json {
                println!(
                    "{}",
                    json!({"signed": false, "error": f.kind, "message": f.message})
                );
            } else {
                eprintln!("pullguard: sign: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

async fn sign(args: &Args) -> Result<Value, Failure> {
    let image = policy::ImageRef::parse(&args.reference)
        .map_err(|e| failure(2, "invalid_reference", e.to_string()))?;
    let tag = image.tag.clone().ok_or_else(|| {
        failure(
            2,
            "invalid_reference",
            format!("{}: give a tag to sign (REPOSITORY:TAG)", args.reference),
        )
    })?;
    let gun = image.repository();
    let (digest_hex, size) = match (&args.digest, args.size) {
        (Some(d), Some(n)) => (parse_digest(d)?, n),
        _ => manifest_of(args, &image, &tag).await?,
    };

    let server = policy::TrustServer {
        name: "sign".to_owned(),
        url: args.server.trim_end_matches('/').to_owned(),
        ca_file: args.ca.clone(),
        timeout: std::time::Duration::from_secs(30),
    };
    let fetcher = daemon::fetch::Fetcher::new(&server)
        .map_err(|e| failure(2, "bad_trust_server", e.to_string()))?;
    let state = StateStore::open(&args.state_dir)
        .map_err(|e| failure(2, "state_unreadable", e.to_string()))?;
    let (files, repo) = current(&fetcher, &state, &gun).await?;

    let root = parse_root("root", files.get("root").unwrap_or_default())
        .map_err(|e| failure(1, "malformed_metadata", e.to_string()))?;
    let top = parse_targets("targets", files.get("targets").unwrap_or_default())
        .map_err(|e| failure(1, "malformed_metadata", e.to_string()))?;
    let role = match &args.role {
        Some(r) => r.clone(),
        None if top
            .body
            .delegations
            .iter()
            .any(|d| d.name == "targets/releases") =>
        {
            "targets/releases".to_owned()
        }
        None => "targets".to_owned(),
    };
    // Who may sign the role, as its parent says.
    let authorised: Vec<(String, trust_core::keys::PublicKey)> = if role == "targets" {
        let ids = root
            .body
            .roles
            .get("targets")
            .map(|r| r.keyids.clone())
            .unwrap_or_default();
        ids.iter()
            .filter_map(|id| root.body.keys.get(id).map(|k| (id.clone(), k.clone())))
            .collect()
    } else {
        let parent = delegating_role(&files, &role)?;
        let d = parent
            .body
            .delegations
            .iter()
            .find(|d| d.name == role)
            .ok_or_else(|| failure(1, "unknown_role", format!("{gun} has no role {role}")))?;
        if !d.uses_hash_prefixes && !d.paths.iter().any(|p| tag.starts_with(p.as_str())) {
            return Err(failure(
                1,
                "outside_delegated_paths",
                format!(
                    "{role} may not sign the tag {tag:?}: its paths are {:?}",
                    d.paths
                ),
            ));
        }
        d.keys
            .keyids
            .iter()
            .filter_map(|id| {
                parent
                    .body
                    .delegation_keys
                    .get(id)
                    .map(|k| (id.clone(), k.clone()))
            })
            .collect()
    };
    let keys = KeyDir::open(&args.keys_dir.join("private"))
        .map_err(|e| failure(2, "keys_unreadable", e.to_string()))?;
    let role_key = signing_key(&keys, &args.keys_dir, &authorised, &role, &gun)?;

    // The new version of the role.
    let now = OffsetDateTime::now_utc();
    let old_role_bytes = files.get(&role);
    let mut body = match old_role_bytes {
        Some(b) => signed_body(b)?,
        // A delegation nobody has signed into yet.
        None => {
            json!({"_type": "Targets", "delegations": {"keys": {}, "roles": []}, "targets": {}, "version": 0})
        }
    };
    let old_version = body["version"].as_u64().unwrap_or(0);
    let digest_bytes = hex::decode(&digest_hex).unwrap_or_default();
    body["targets"][&tag] = json!({
        "hashes": {"sha256": base64::engine::general_purpose::STANDARD.encode(&digest_bytes)},
        "length": size,
    });
    body["version"] = json!(old_version + 1);
    body["expires"] = json!(rfc3339(now + ROLE_LIFETIME));
    let role_file = envelope(&body, &[(role_key.0.as_str(), &role_key.1)])?;
    let mut upload = vec![(role.clone(), role_file.clone())];

    // The snapshot: ours to sign if we hold its key, else the server's.
    let snapshot_ids = root
        .body
        .roles
        .get("snapshot")
        .map(|r| r.keyids.clone())
        .unwrap_or_default();
    let snapshot_keys: Vec<_> = snapshot_ids
        .iter()
        .filter_map(|id| root.body.keys.get(id).map(|k| (id.clone(), k.clone())))
        .collect();
    let ours = |id: &String| stored_ids(&keys).contains(id);
    if snapshot_keys.iter().any(|(id, _)| ours(id)) {
        let snap_key = signing_key(&keys, &args.keys_dir, &snapshot_keys, "snapshot", &gun)?;
        let mut snap = signed_body(files.get("snapshot").unwrap_or_default())?;
        snap["meta"][&role] = json!({
            "hashes": {
                "sha256": base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&role_file)),
                "sha512": base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(&role_file)),
            },
            "length": role_file.len(),
        });
        let v = snap["version"].as_u64().unwrap_or(0);
        snap["version"] = json!(v + 1);
        snap["expires"] = json!(rfc3339(now + ROLE_LIFETIME));
        upload.push((
            "snapshot".to_owned(),
            envelope(&snap, &[(snap_key.0.as_str(), &snap_key.1)])?,
        ));
    }

    if let Err(mut f) = publish(&fetcher, &gun, &upload).await {
        // Tell a concurrent publish apart from a refusal of our own update: every
        // publish makes a new snapshot.
        if f.kind == "upload_refused" {
            if let Ok(now_files) = fetcher.fetch(&gun, None).await {
                if now_files.get("snapshot") != files.get("snapshot") {
                    f.kind = "concurrent_publish";
                    f.message = format!(
                        "someone else published to {gun} while this run was preparing {role} version {}; nothing of this run was published — run it again ({})",
                        old_version + 1,
                        f.message
                    );
                }
            }
        }
        return Err(f);
    }

    // Read back what nodes will read, and check it says what we signed.
    let (_, after) = current(&fetcher, &state, &gun).await?;
    let policy = if role == "targets" || role == "targets/releases" {
        TagPolicy::Docker
    } else {
        TagPolicy::AnyRole
    };
    let m = after.resolve_tag(&tag, policy).map_err(|e| {
        failure(
            1,
            "not_published",
            format!("published, but reading it back: {e}"),
        )
    })?;
    if m.sha256 != digest_hex {
        return Err(failure(
            1,
            "not_published",
            format!("published, but {gun}:{tag} now resolves to sha256:{} (someone else signed it meanwhile?)", m.sha256),
        ));
    }
    drop(repo);
    Ok(json!({
        "signed": true,
        "repository": gun,
        "tag": tag,
        "digest": format!("sha256:{digest_hex}"),
        "size": size,
        "role": role,
        "version": old_version + 1,
        "snapshot": if upload.len() > 1 { "signed here" } else { "signed by the server" },
    }))
}

fn parse_digest(d: &str) -> Result<String, Failure> {
    match d.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(h.to_ascii_lowercase())
        }
        _ => Err(failure(
            2,
            "invalid_digest",
            format!("{d:?} is not sha256:<64 hex digits>"),
        )),
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The repository's trust data, fetched and verified against the signer's own state.
async fn current(
    fetcher: &daemon::fetch::Fetcher,
    state: &StateStore,
    gun: &str,
) -> Result<(RepoFiles, VerifiedRepo), Failure> {
    let now = OffsetDateTime::now_utc();
    let record = state
        .load(gun)
        .map_err(|e| failure(2, "state_unreadable", e.to_string()))?;
    let trusted_root = record
        .as_ref()
        .and_then(|r| r.trusted.versions.get("root").copied());
    let files = fetcher.fetch(gun, trusted_root).await.map_err(|e| match e {
        daemon::fetch::FetchError::NotFound { .. } => failure(
            1,
            "no_trust_data",
            format!("{e}; pullguard sign cannot initialise a repository yet: initialise it once with `notary init {gun}` and `notary publish {gun}`, then sign with pullguard"),
        ),
        other => failure(3, "trust_server_unreachable", other.to_string()),
    })?;
    let mut opts = VerifyOptions::new(gun, now, RootAnchor::FirstUse);
    opts.state = record.as_ref().map(|r| &r.trusted);
    let repo = trust_core::verify(&files, &opts).map_err(|e| {
        failure(
            1,
            e.reason().as_str(),
            format!("the current trust data of {gun} does not verify, so nothing was signed: {e}"),
        )
    })?;
    let tofu = key_store::TofuRecord::if_first_use(&repo, now);
    state
        .record_verified(repo.state.clone(), now, tofu)
        .map_err(|e| failure(2, "state_unwritable", e.to_string()))?;
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
            1,
            "unknown_role",
            format!("{parent} (the parent of {role}) has no trust data"),
        )
    })?;
    parse_targets(parent, bytes).map_err(|e| failure(1, "malformed_metadata", e.to_string()))
}

/// One of our keys that may sign, with the ID the role lists it under. Notary lists
/// delegation keys as certificates but names private keys by the bare public key's ID.
fn signing_key(
    keys: &KeyDir,
    keys_dir: &Path,
    authorised: &[(String, trust_core::keys::PublicKey)],
    role: &str,
    gun: &str,
) -> Result<(String, SigningKey), Failure> {
    let stored: Vec<String> = keys
        .list()
        .map_err(|e| failure(2, "keys_unreadable", e.to_string()))?
        .into_iter()
        .map(|k| k.id)
        .collect();
    for (listed, public) in authorised {
        let bare = public
            .cert()
            .map(|c| trust_core::keys::key_id("ecdsa", &c.spki));
        let Some(id) = [Some(listed.clone()), bare]
            .into_iter()
            .flatten()
            .find(|id| stored.contains(id))
        else {
            continue;
        };
        let env = "PULLGUARD_REPOSITORY_PASSPHRASE";
        let pass = crate::keys::passphrase_for(
            env,
            &format!(
                "Passphrase for the {role} key {}: ",
                &id[..12.min(id.len())]
            ),
        )
        .map_err(|e| failure(2, "no_passphrase", e))?;
        let key = keys.load(&id, &pass).map_err(|e| {
            failure(
                2,
                "wrong_passphrase",
                format!(
                    "{e} (the passphrase comes from {env} or the terminal); nothing was published"
                ),
            )
        })?;
        return Ok((listed.clone(), key));
    }
    Err(failure(
        2,
        "missing_key",
        format!(
            "no key in {} may sign {role} of {gun} (it accepts key IDs {}); import it with `pullguard keys import`, or have its holder sign, or add yours with `pullguard signer add`",
            keys_dir.join("private").display(),
            authorised.iter().map(|(id, _)| &id[..12.min(id.len())]).collect::<Vec<_>>().join(", ")
        ),
    ))
}

fn stored_ids(keys: &KeyDir) -> Vec<String> {
    keys.list()
        .map(|l| l.into_iter().map(|k| k.id).collect())
        .unwrap_or_default()
}

/// The `signed` object of a role file.
fn signed_body(bytes: &[u8]) -> Result<Value, Failure> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| failure(1, "malformed_metadata", e.to_string()))?;
    match v.get("signed") {
        Some(s) if s.is_object() => Ok(s.clone()),
        _ => Err(failure(
            1,
            "malformed_metadata",
            "a role file without a signed object",
        )),
    }
}

/// `{"signed": …, "signatures": […]}` with `signed` in canonical form, signed by `keys`.
fn envelope(body: &Value, keys: &[(&str, &SigningKey)]) -> Result<Vec<u8>, Failure> {
    let canonical = trust_core::canonical::canonicalize(
        &serde_json::to_vec(body).map_err(|e| failure(2, "internal_error", e.to_string()))?,
    )
    .map_err(|e| failure(2, "internal_error", e.to_string()))?;
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
    out.extend_from_slice(
        &serde_json::to_vec(&signatures)
            .map_err(|e| failure(2, "internal_error", e.to_string()))?,
    );
    out.push(b'}');
    Ok(out)
}

/// One multipart POST of every changed role: notary-server applies all or nothing.
async fn publish(
    fetcher: &daemon::fetch::Fetcher,
    gun: &str,
    files: &[(String, Vec<u8>)],
) -> Result<(), Failure> {
    let mut form = reqwest::multipart::Form::new();
    for (role, bytes) in files {
        let part = reqwest::multipart::Part::bytes(bytes.clone())
            .file_name(role.clone())
            .mime_str("application/octet-stream")
            .map_err(|e| failure(2, "internal_error", e.to_string()))?;
        form = form.part("files", part);
    }
    let (client, base) = fetcher.http();
    let url = format!("{base}/v2/{gun}/_trust/tuf/");
    let resp = client
        .post(&url)
        .multipart(form)
        .send()
        .await
        .map_err(|e| {
            failure(
                3,
                "trust_server_unreachable",
                format!("cannot upload to {base}: {e}; nothing was published"),
            )
        })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let body = resp.bytes().await.unwrap_or_default();
    let detail = serde_json::from_slice::<Value>(&body[..body.len().min(64 * 1024)])
        .ok()
        .and_then(|v| {
            let e = v["errors"].get(0)?.clone();
            Some(format!(
                "{} {}",
                e["message"].as_str().unwrap_or_default(),
                e.get("detail").map(Value::to_string).unwrap_or_default()
            ))
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned());
    Err(failure(
        1,
        "upload_refused",
        format!(
            "{base} refused the update (HTTP {status}): {}; the remote trust data is unchanged",
            detail.trim()
        ),
    ))
}

/// The tag's manifest digest and size, from the registry.
async fn manifest_of(
    args: &Args,
    image: &policy::ImageRef,
    tag: &str,
) -> Result<(String, u64), Failure> {
    use oci_client::{client::ClientConfig, client::ClientProtocol, secrets::RegistryAuth};
    let registry = if image.domain == "docker.io" {
        "index.docker.io".to_owned()
    } else {
        image.domain.clone()
    };
    let reference =
        oci_client::Reference::with_tag(registry.clone(), image.path.clone(), tag.to_owned());
    let client = oci_client::Client::new(ClientConfig {
        protocol: if args.insecure_registry.is_empty() {
            ClientProtocol::Https
        } else {
            ClientProtocol::HttpsExcept(args.insecure_registry.clone())
        },
        ..ClientConfig::default()
    });
    let auth = match docker_config_auth(&image.domain) {
        Some((user, pass)) => RegistryAuth::Basic(user, pass),
        None => RegistryAuth::Anonymous,
    };
    let accepted = [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ];
    let (bytes, digest) = client
        .pull_manifest_raw(&reference, &auth, &accepted)
        .await
        .map_err(|e| {
            failure(
                3,
                "registry_unreachable",
                format!("cannot read the manifest of {}:{tag} from {registry}: {e} (or give --digest and --size)", image.repository()),
            )
        })?;
    // The registry's digest header is not trusted: the bytes are hashed here.
    let computed = hex::encode(sha2::Sha256::digest(&bytes));
    if !digest.is_empty() && digest != format!("sha256:{computed}") {
        return Err(failure(
            1,
            "digest_mismatch",
            format!(
                "{registry} says {digest} but the manifest it sent hashes to sha256:{computed}"
            ),
        ));
    }
    Ok((computed, bytes.len() as u64))
}

/// Basic credentials for `registry` from the docker config file (`$DOCKER_CONFIG` or
/// `~/.docker`), if it has an `auths` entry. Credential helpers are not run.
fn docker_config_auth(registry: &str) -> Option<(String, String)> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")))?;
    let text = std::fs::read(dir.join("config.json")).ok()?;
    let v: Value = serde_json::from_slice(&text).ok()?;
    let auths = v["auths"].as_object()?;
    let names = [
        registry.to_owned(),
        format!("https://{registry}"),
        if registry == "docker.io" {
            "https://index.docker.io/v1/".to_owned()
        } else {
            format!("http://{registry}")
        },
    ];
    let entry = names.iter().find_map(|n| auths.get(n))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(entry["auth"].as_str()?)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}
