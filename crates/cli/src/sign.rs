//! `pullguard sign`: adds an image tag to a repository's Notary trust data and publishes
//! it, so that nodes running pullguardd accept the pull.
//!
//! The tag's digest and size come from the registry (OCI distribution API, `registry.rs`,
//! credentials from the docker config file), or from `--digest` and `--size`. The current
//! trust data is fetched and verified first (trust on first use, then the rollback
//! protection of the state directory), the changed role gets a new version signed with
//! our keys, and the result is uploaded the way notary-server expects: one multipart
//! POST, which the server accepts or refuses as a whole. When the snapshot key is not
//! ours, the server signs the snapshot (and always the timestamp).
//!
//! A repository with no trust data yet is initialised by its first tag: root and
//! targets keys made here (the root key stays here, encrypted), timestamp and snapshot
//! keys held by the server.

use api::codes::ReasonCode;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine as _;
use serde_json::{json, Value};
use trust_core::TagPolicy;

use crate::publish::TargetArgs;
use notary_writer::{failure, Class, Failure, Kind, Session};

pub const EXAMPLES: &str = "\
Examples:
  PULLGUARD_REPOSITORY_PASSPHRASE=… pullguard sign registry.example.com/team/app:1.4 \\
      --server https://notary.example.com --keys-dir ~/.pullguard/keys
  pullguard sign registry.example.com/team/app:1.4 --digest sha256:4f1c… --size 1234 --server …
  pullguard sign 127.0.0.1:5000/team/app:dev --insecure-registry 127.0.0.1:5000 --server …

Exit codes: 0 signed and published (read back and checked), 1 refused (the trust data does not verify, a tag outside a role's paths, a concurrent publish), 2 bad usage, a missing key or a wrong passphrase, 3 the registry or the trust server cannot be reached.";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image: REGISTRY/REPOSITORY:TAG.
    pub reference: String,
    #[command(flatten)]
    pub target: TargetArgs,
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
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> ExitCode {
    crate::publish::report("sign", args.json, async {
        let done = sign(args).await?;
        let text = format!(
            "signed {}:{} = {} ({} bytes) in {}, version {}; published to {}",
            done["repository"].as_str().unwrap_or_default(),
            done["tag"].as_str().unwrap_or_default(),
            done["digest"].as_str().unwrap_or_default(),
            done["size"],
            done["role"].as_str().unwrap_or_default(),
            done["version"],
            args.target.server
        );
        Ok((done, text))
    })
}

async fn sign(args: &Args) -> Result<Value, Failure> {
    let image = policy::ImageRef::parse(&args.reference).map_err(|e| {
        failure(
            Class::Usage,
            Kind::Reason(ReasonCode::InvalidReference),
            e.to_string(),
        )
    })?;
    let tag = image.tag.clone().ok_or_else(|| {
        failure(
            Class::Usage,
            Kind::Reason(ReasonCode::InvalidReference),
            format!("{}: give a tag to sign (REPOSITORY:TAG)", args.reference),
        )
    })?;
    let gun = image.repository();
    // Trust data first: no registry round trip for a repository we cannot sign.
    let session = match Session::open(&(&args.target).into(), &gun).await {
        Ok(s) => s,
        Err(f)
            if f.kind == Kind::Reason(ReasonCode::NoTrustData)
                && args.role.as_deref().is_none_or(|r| r == "targets") =>
        {
            // A new repository: its first tag initialises it.
            let (digest_hex, size) = manifest(args, &image, &tag).await?;
            let mut targets = json!({});
            targets[&tag] = target_entry(&digest_hex, size);
            notary_writer::initialise(&(&args.target).into(), &gun, targets).await?;
            let after = Session::open(&(&args.target).into(), &gun)
                .await?
                .read_back()
                .await?;
            check_resolves(&after, &gun, &tag, "targets", &digest_hex)?;
            return Ok(done(
                &gun,
                &tag,
                &digest_hex,
                size,
                "targets",
                1,
                false,
                true,
            ));
        }
        Err(f) => return Err(f),
    };
    let role = match &args.role {
        Some(r) => r.clone(),
        None if session
            .top
            .body
            .delegations
            .iter()
            .any(|d| d.name == "targets/releases") =>
        {
            "targets/releases".to_owned()
        }
        None => "targets".to_owned(),
    };
    let authorised = if role == "targets" {
        session.root_role_keys("targets")
    } else {
        session.delegation_keys(&role, Some(&tag))?
    };
    let key = session.key_for(&authorised, &role)?;
    let (digest_hex, size) = manifest(args, &image, &tag).await?;

    let mut body = session.body_of(&role)?;
    let version = body["version"].as_u64().unwrap_or(0) + 1;
    body["targets"][&tag] = target_entry(&digest_hex, size);
    let snapshot_here = session
        .publish(vec![(role.clone(), body, vec![key])])
        .await?;

    // Read back what nodes will read, and check it says what we signed.
    let after = session.read_back().await?;
    check_resolves(&after, &gun, &tag, &role, &digest_hex)?;
    Ok(done(
        &gun,
        &tag,
        &digest_hex,
        size,
        &role,
        version,
        snapshot_here,
        false,
    ))
}

/// The tag's digest and size: given, or from the registry.
async fn manifest(
    args: &Args,
    image: &policy::ImageRef,
    tag: &str,
) -> Result<(String, u64), Failure> {
    match (&args.digest, args.size) {
        (Some(d), Some(n)) => Ok((parse_digest(d)?, n)),
        _ => manifest_of(args, image, tag).await,
    }
}

/// A targets entry as Notary writes one for an image: manifest SHA-256 and length.
fn target_entry(digest_hex: &str, size: u64) -> Value {
    let digest_bytes = hex::decode(digest_hex).unwrap_or_default();
    json!({
        "hashes": {"sha256": base64::engine::general_purpose::STANDARD.encode(&digest_bytes)},
        "length": size,
    })
}

/// Whether the published trust data now resolves `tag` to the digest we signed.
fn check_resolves(
    after: &trust_core::VerifiedRepo,
    gun: &str,
    tag: &str,
    role: &str,
    digest_hex: &str,
) -> Result<(), Failure> {
    let policy = if role == "targets" || role == "targets/releases" {
        TagPolicy::Docker
    } else {
        TagPolicy::AnyRole
    };
    let m = after.resolve_tag(tag, policy).map_err(|e| {
        failure(
            Class::Refused,
            Kind::NotPublished,
            format!("published, but reading it back: {e}"),
        )
    })?;
    if m.sha256 != digest_hex {
        return Err(failure(Class::Refused,
            Kind::NotPublished,
            format!("published, but {gun}:{tag} now resolves to sha256:{} (someone else signed it meanwhile?)", m.sha256),
        ));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)] // one JSON object's fields
fn done(
    gun: &str,
    tag: &str,
    digest_hex: &str,
    size: u64,
    role: &str,
    version: u64,
    snapshot_here: bool,
    initialised: bool,
) -> Value {
    json!({
        "ok": true,
        "signed": true,
        "repository": gun,
        "tag": tag,
        "digest": format!("sha256:{digest_hex}"),
        "size": size,
        "role": role,
        "version": version,
        "snapshot": if snapshot_here { "signed here" } else { "signed by the server" },
        "initialised": initialised,
    })
}

fn parse_digest(d: &str) -> Result<String, Failure> {
    match trust_core::Sha256::from_prefixed(d) {
        Some(h) => Ok(h.hex().to_owned()),
        None => Err(failure(
            Class::Usage,
            Kind::InvalidDigest,
            format!("{d:?} is not sha256:<64 hex digits>"),
        )),
    }
}

/// The tag's manifest digest and size, from the registry.
async fn manifest_of(
    args: &Args,
    image: &policy::ImageRef,
    tag: &str,
) -> Result<(String, u64), Failure> {
    // Compared as canonical hosts: `LOCALHOST:05000` names `localhost:5000`.
    let insecure: Vec<String> = args
        .insecure_registry
        .iter()
        .filter_map(|h| policy::canonical_host(h).ok())
        .collect();
    let unreachable = |e: String| {
        failure(
            Class::Unreachable,
            Kind::RegistryUnreachable,
            format!(
                "cannot read the manifest of {}:{tag} from {}: {e} (or give --digest and --size)",
                image.repository(),
                image.domain
            ),
        )
    };
    // Credentials as `docker login` keeps them ($DOCKER_CONFIG or ~/.docker); anonymous
    // without the file. Credential helpers are not run.
    let config = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")))
        .map(|d| d.join("config.json"))
        .filter(|f| f.is_file());
    let (client, _) =
        registry::Client::new(None, config.as_deref(), std::time::Duration::from_secs(60))
            .map_err(|e| unreachable(e.to_string()))?;
    let client = client.with_plain_http(insecure);
    // The bytes are hashed by the client; the registry's digest header is not trusted.
    let m = client
        .manifest(
            &image.domain,
            &image.path,
            tag,
            &registry::Budget::per_verdict(),
        )
        .await
        .map_err(|e| unreachable(e.to_string()))?
        .ok_or_else(|| unreachable("the registry has no such tag".to_owned()))?;
    Ok((
        m.digest.trim_start_matches("sha256:").to_owned(),
        m.bytes.len() as u64,
    ))
}
