//! The OCI distribution API, read-only, as pullguardd needs it to find signatures stored
//! beside images: manifests by tag or digest, blobs by digest, and the OCI 1.1 referrers
//! API with its tag-schema fallback. Registry access follows containerd's: `hosts.toml`
//! under a `config_path` for mirrors, CAs and plain-HTTP registries ([`hosts`]), and
//! credentials from a docker `config.json` ([`auth`]).
//!
//! Everything read is bounded; content fetched by digest is hashed and compared, so a
//! mirror cannot substitute it. Nothing here decides whether a signature is good.

pub mod auth;
pub mod hosts;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

pub use auth::Credentials;
pub use hosts::Endpoint;

/// Manifests and indexes: registries cap them at 4 MiB.
pub const MAX_MANIFEST: usize = 4 << 20;
/// Referrers considered for one image at most.
pub const MAX_REFERRERS: usize = 64;
const MAX_TOKEN_ANSWER: usize = 1 << 20;
/// Hosts (and tokens) a client remembers at most.
const MAX_HOSTS: usize = 1024;
/// A token is reused this long when the service does not say (Docker's default is 60 s).
const TOKEN_REUSE: Duration = Duration::from_secs(50);

/// The artifact type of an artifact with an empty config, as some tools (cosign 2.6's
/// `--new-bundle-format`) write it into a referrers index entry; the manifest says more.
pub const EMPTY_ARTIFACT_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// The media types a manifest or index may have.
pub const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// What went wrong, saying where and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A hosts.toml that cannot be used.
    #[error("registry host configuration {path}: {detail}")]
    HostsFile { path: String, detail: String },
    /// A docker config.json that cannot be used.
    #[error("registry credentials file {path}: {detail}")]
    AuthFile { path: String, detail: String },
    /// A CA file named by hosts.toml that cannot be used.
    #[error("CA file {path} named in hosts.toml: {detail}")]
    BadCa { path: String, detail: String },
    /// No answer (connection, timeout, a server error).
    #[error("registry {url} could not be asked: {detail}")]
    Unreachable { url: String, detail: String },
    /// The registry refused (authentication, permission, or an unexpected status).
    #[error("registry {url} answered {status}{detail}")]
    Refused {
        url: String,
        status: u16,
        detail: String,
    },
    /// An answer over its size limit.
    #[error("registry {url} sent more than {limit} bytes")]
    Oversized { url: String, limit: usize },
    /// An answer that is not what was asked for.
    #[error("registry {url} sent {detail}")]
    Invalid { url: String, detail: String },
    /// One verdict's reading went over its [`Budget`].
    #[error("reading the signatures from {url} took {what}; the lookup was stopped")]
    Budget { url: String, what: String },
    /// A login challenge naming a token service the credentials must not go to.
    #[error("registry {url} asks for credentials at {realm}, {why}; nothing was sent there")]
    UnsafeRealm {
        url: String,
        realm: String,
        why: String,
    },
}

/// What kind of failure an [`Error`] is, for the verdict: only an outage is transient
/// (`on_unreachable` applies, the watcher keeps a present image); everything else is an
/// answer and is refused as such.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// No answer: connection, timeout, 5xx, 429. Try again later.
    Unavailable,
    /// The registry (or its token service) refused pullguardd's credentials, or asked
    /// for credentials pullguardd may not send where it asked.
    Credentials,
    /// An answer that is wrong: oversized, unparseable, hashing to another digest, a
    /// blob its manifest lists missing. Possibly hostile; never an outage.
    Content,
    /// The node's own configuration (hosts.toml, its CA files, the credentials file).
    Config,
    /// More requests, bytes or time than one verdict may spend.
    Budget,
}

impl Error {
    /// The registry could not be asked, as opposed to having answered.
    pub fn is_unreachable(&self) -> bool {
        self.class() == ErrorClass::Unavailable
    }

    /// Which kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Unreachable { .. } => ErrorClass::Unavailable,
            Error::Refused {
                status: 401 | 403, ..
            }
            | Error::UnsafeRealm { .. } => ErrorClass::Credentials,
            Error::Refused { .. } | Error::Oversized { .. } | Error::Invalid { .. } => {
                ErrorClass::Content
            }
            Error::HostsFile { .. } | Error::AuthFile { .. } | Error::BadCa { .. } => {
                ErrorClass::Config
            }
            Error::Budget { .. } => ErrorClass::Budget,
        }
    }
}

/// A document fetched from a registry.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its media type, from the document itself when it says, else the header.
    pub media_type: String,
    /// `sha256:<hex>` of the bytes, computed here.
    pub digest: String,
}

/// What one verdict may spend reading a registry: requests, bytes and wall time. A
/// flood of referrers, or a registry that answers slowly on purpose, ends the lookup
/// with [`Error::Budget`] instead of holding the verdict.
#[derive(Debug)]
pub struct Budget {
    requests: AtomicUsize,
    bytes: AtomicUsize,
    deadline: Instant,
}

impl Budget {
    /// Requests one verdict may make: the classic tag, a few pages of referrers and,
    /// for each signature considered, its manifest and blob.
    pub const REQUESTS: usize = 4 + 2 * MAX_REFERRERS + MAX_PAGES;
    /// Bytes one verdict may read.
    pub const BYTES: usize = 32 << 20;
    /// Wall time one verdict may take.
    pub const TIME: Duration = Duration::from_secs(20);

    /// The budget of one verdict, starting now.
    pub fn per_verdict() -> Budget {
        Budget::new(Budget::REQUESTS, Budget::BYTES, Budget::TIME)
    }

    /// A budget of `requests`, `bytes` and `time` from now.
    pub fn new(requests: usize, bytes: usize, time: Duration) -> Budget {
        Budget {
            requests: AtomicUsize::new(requests),
            bytes: AtomicUsize::new(bytes),
            deadline: Instant::now() + time,
        }
    }

    fn exceeded(what: &str, url: &str) -> Error {
        Error::Budget {
            url: url.to_owned(),
            what: what.to_owned(),
        }
    }

    /// One request more, and the time left for it.
    fn request(&self, url: &str) -> Result<Duration, Error> {
        take(&self.requests, 1).ok_or_else(|| {
            Budget::exceeded(&format!("more than {} requests", Budget::REQUESTS), url)
        })?;
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Budget::exceeded("more time than a verdict may take", url));
        }
        Ok(left)
    }

    fn bytes(&self, n: usize, url: &str) -> Result<(), Error> {
        take(&self.bytes, n)
            .map(|_| ())
            .ok_or_else(|| Budget::exceeded(&format!("more than {} bytes", Budget::BYTES), url))
    }
}

/// Subtracts `n` from `counter` if it holds that much.
fn take(counter: &AtomicUsize, n: usize) -> Option<usize> {
    counter
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
            left.checked_sub(n)
        })
        .ok()
}

/// Pages of a referrers answer followed at most.
pub const MAX_PAGES: usize = 8;

/// What a referrers lookup found.
#[derive(Debug, Default)]
pub struct Referrers {
    /// Descriptors of the artifact types asked for, at most [`MAX_REFERRERS`], in the
    /// registry's order.
    pub matching: Vec<Descriptor>,
    /// Entries passed over because they could not be read as descriptors.
    pub broken: usize,
    /// Entries of other artifact types (SBOMs, attestations, …).
    pub other: usize,
}

/// One answer of a GET.
struct Got {
    bytes: Vec<u8>,
    media_type: String,
    url: String,
    /// The `Link: <…>; rel="next"` of a paged answer, on the same origin.
    next: Option<String>,
}

/// A descriptor from an index (referrers answer or fallback tag).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    /// Media type of what it points to.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// Its digest.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// The artifact type, for referrers.
    #[serde(rename = "artifactType", default)]
    pub artifact_type: String,
}

#[derive(Deserialize)]
struct Index {
    // Entries one at a time: a broken one is counted and passed over, not fatal.
    #[serde(default)]
    manifests: Vec<serde_json::Value>,
}

/// A client for every registry, configured like the node's containerd.
pub struct Client {
    config_path: Option<PathBuf>,
    credentials: Credentials,
    timeout: Duration,
    /// HTTP clients per TLS configuration (CA files, skip_verify).
    http: Mutex<HashMap<(Vec<PathBuf>, bool), reqwest::Client>>,
    /// The CA certificates hosts.toml names, read once per policy generation.
    cas: Mutex<HashMap<PathBuf, Vec<reqwest::Certificate>>>,
    /// Bearer tokens per endpoint and repository (at most [`MAX_HOSTS`]).
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// Each host's endpoints, from hosts.toml (at most [`MAX_HOSTS`]).
    endpoints: Mutex<HashMap<String, Result<Vec<Endpoint>, String>>>,
    /// Hosts reached over plain HTTP when no hosts.toml says otherwise (the CLI's
    /// `--insecure-registry`).
    plain_http: Vec<String>,
}

impl Client {
    /// A client reading `hosts.toml` files under `config_path` and credentials from
    /// `auth_file`. Returns warnings for what the credentials file holds but is not used.
    pub fn new(
        config_path: Option<&Path>,
        auth_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<(Client, Vec<String>), Error> {
        let (credentials, warnings) = match auth_file {
            Some(f) => Credentials::load(f)?,
            None => (Credentials::default(), Vec::new()),
        };
        Ok((
            Client {
                config_path: config_path.map(Path::to_path_buf),
                credentials,
                timeout,
                http: Mutex::default(),
                cas: Mutex::default(),
                tokens: Mutex::default(),
                endpoints: Mutex::default(),
                plain_http: Vec::new(),
            },
            warnings,
        ))
    }

    /// Reaches `hosts` over plain HTTP where no hosts.toml names their server.
    pub fn with_plain_http(mut self, hosts: Vec<String>) -> Client {
        self.plain_http = hosts;
        self
    }

    fn http(&self, e: &Endpoint) -> Result<reqwest::Client, Error> {
        let key = (e.ca.clone(), e.skip_verify);
        let mut map = self.http.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(&key) {
            return Ok(c.clone());
        }
        let c = self.builder(e)?.build().map_err(|err| Error::BadCa {
            path: format!("{:?}", e.ca),
            detail: api::error_chain(&err),
        })?;
        map.insert(key, c.clone());
        Ok(c)
    }

    /// A client for one token request that connects to `url`'s host only at `addrs`
    /// (those check_realm judged) and follows no redirect. Token requests are rare
    /// (tokens are reused), so it is built each time.
    fn pinned(
        &self,
        e: &Endpoint,
        url: &reqwest::Url,
        addrs: &[std::net::SocketAddr],
    ) -> Result<reqwest::Client, Error> {
        let host = url.host_str().unwrap_or_default();
        self.builder(e)?
            .redirect(reqwest::redirect::Policy::none())
            .resolve_to_addrs(host.trim_start_matches('[').trim_end_matches(']'), addrs)
            .build()
            .map_err(|err| Error::BadCa {
                path: format!("{:?}", e.ca),
                detail: api::error_chain(&err),
            })
    }

    fn ca_file(&self, ca: &Path) -> Result<Vec<reqwest::Certificate>, Error> {
        let mut map = self.cas.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(ca) {
            return Ok(c.clone());
        }
        let bad = |detail: String| Error::BadCa {
            path: ca.display().to_string(),
            detail,
        };
        let pem = std::fs::read(ca).map_err(|e| bad(e.to_string()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
        map.insert(ca.to_owned(), certs.clone());
        Ok(certs)
    }

    fn builder(&self, e: &Endpoint) -> Result<reqwest::ClientBuilder, Error> {
        notary_client::use_ring_for_tls();
        let mut b = reqwest::Client::builder()
            .connect_timeout(self.timeout)
            .timeout(self.timeout)
            .min_tls_version(reqwest::tls::Version::TLS_1_2)
            // Blobs are often redirected to storage; a few hops at most.
            .redirect(reqwest::redirect::Policy::limited(3))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("pullguardd/", env!("CARGO_PKG_VERSION")));
        for ca in &e.ca {
            for c in self.ca_file(ca)? {
                b = b.add_root_certificate(c);
            }
        }
        if e.skip_verify {
            b = b.tls_danger_accept_invalid_certs(true);
        }
        Ok(b)
    }

    /// The manifest `reference` (a tag, or `sha256:<hex>`) of `repo` on `host`; `None`
    /// when the registry says it does not exist. By digest, the bytes must hash to it.
    pub async fn manifest(
        &self,
        host: &str,
        repo: &str,
        reference: &str,
        budget: &Budget,
    ) -> Result<Option<Fetched>, Error> {
        let by_digest = reference.starts_with("sha256:");
        let got = self
            .get(
                host,
                repo,
                &format!("manifests/{reference}"),
                by_digest,
                MAX_MANIFEST,
                budget,
            )
            .await?;
        let Some(Got {
            bytes,
            media_type: header_type,
            url,
            ..
        }) = got
        else {
            return Ok(None);
        };
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if by_digest && digest != reference {
            return Err(Error::Invalid {
                url,
                detail: format!("a manifest hashing to {digest}, not the {reference} asked for"),
            });
        }
        #[derive(Deserialize)]
        struct Typed {
            #[serde(rename = "mediaType")]
            media_type: Option<String>,
        }
        let media_type = serde_json::from_slice::<Typed>(&bytes)
            .ok()
            .and_then(|t| t.media_type)
            .unwrap_or(header_type);
        Ok(Some(Fetched {
            bytes,
            media_type,
            digest,
        }))
    }

    /// The blob `digest` of `repo`, at most `limit` bytes, checked against its digest.
    pub async fn blob(
        &self,
        host: &str,
        repo: &str,
        digest: &str,
        limit: usize,
        budget: &Budget,
    ) -> Result<Vec<u8>, Error> {
        let path = format!("blobs/{digest}");
        let got = self
            .get(host, repo, &path, true, limit, budget)
            .await?
            .ok_or_else(|| Error::Refused {
                url: format!("{host}/{repo}/{path}"),
                status: 404,
                detail: ": a blob its manifest lists is missing".to_owned(),
            })?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&got.bytes)));
        if actual != digest {
            return Err(Error::Invalid {
                url: got.url,
                detail: format!("a blob hashing to {actual}, not {digest}"),
            });
        }
        Ok(got.bytes)
    }

    /// The manifests that refer to `digest` with one of `artifact_types`: the OCI 1.1
    /// referrers API (every page), or, where the registry has none, the tag-schema
    /// fallback `sha256-<hex>`. Entries are filtered by type before anything is capped,
    /// so SBOMs or junk piled up beside an image cannot push its signatures out; broken
    /// entries are counted and passed over.
    pub async fn referrers(
        &self,
        host: &str,
        repo: &str,
        digest: &str,
        artifact_types: &[&str],
        budget: &Budget,
    ) -> Result<Referrers, Error> {
        let mut path = format!("referrers/{digest}");
        if let [only] = artifact_types {
            path = format!("{path}?artifactType={only}");
        }
        let mut found = Referrers::default();
        let mut page = match self
            .get(host, repo, &path, true, MAX_MANIFEST, budget)
            .await?
        {
            Some(got) => Some(got),
            None => {
                let tag = digest.replacen(':', "-", 1);
                self.get(
                    host,
                    repo,
                    &format!("manifests/{tag}"),
                    false,
                    MAX_MANIFEST,
                    budget,
                )
                .await?
            }
        };
        let mut pages = 0;
        while let Some(got) = page.take() {
            pages += 1;
            let index: Index = serde_json::from_slice(&got.bytes).map_err(|e| Error::Invalid {
                url: got.url.clone(),
                detail: format!("a referrers index that is not an OCI index: {e}"),
            })?;
            for entry in index.manifests {
                // Registries may ignore the filter; it is applied here too.
                match serde_json::from_value::<Descriptor>(entry) {
                    Ok(d) if artifact_types.contains(&d.artifact_type.as_str()) => {
                        if found.matching.len() < MAX_REFERRERS {
                            found.matching.push(d);
                        }
                    }
                    Ok(_) => found.other += 1,
                    Err(_) => found.broken += 1,
                }
            }
            if found.matching.len() >= MAX_REFERRERS || pages >= MAX_PAGES {
                break;
            }
            if let Some(next) = got.next {
                let e = self.endpoint_of(host, &next)?;
                page = self
                    .get_one(&e, host, repo, &next, MAX_MANIFEST, budget)
                    .await?;
            }
        }
        Ok(found)
    }

    /// The endpoints of `host`, from hosts.toml read once per client (a policy
    /// generation: a reload makes a new client and so reads them again).
    fn endpoints(&self, host: &str) -> Result<Vec<Endpoint>, Error> {
        let mut cache = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = cache.get(host) {
            return found.clone().map_err(|detail| Error::HostsFile {
                path: self
                    .config_path
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                detail,
            });
        }
        let mut endpoints = hosts::endpoints(self.config_path.as_deref(), host);
        if let Ok(endpoints) = endpoints.as_mut() {
            if self.plain_http.iter().any(|h| h == host) {
                let https = format!("https://{}", hosts::api_host(host));
                for e in endpoints.iter_mut().filter(|e| e.url == https) {
                    e.url = format!("http://{}", hosts::api_host(host));
                }
            }
        }
        // Bounded: images name hosts, and images come from anywhere.
        if cache.len() >= MAX_HOSTS {
            cache.clear();
        }
        cache.insert(
            host.to_owned(),
            endpoints
                .as_ref()
                .map(Clone::clone)
                .map_err(ToString::to_string),
        );
        endpoints
    }

    /// The endpoint a paging link stays on: the origin of one of `host`'s endpoints.
    fn endpoint_of(&self, host: &str, url: &str) -> Result<Endpoint, Error> {
        self.endpoints(host)?
            .into_iter()
            .find(|e| url.starts_with(&format!("{}/", e.url)))
            .ok_or_else(|| Error::Invalid {
                url: api::capped(url, 200),
                detail: "a referrers page link to another origin".to_owned(),
            })
    }

    /// GET `path` under `repo` from the first endpoint that answers; `None` on 404 from
    /// the last one asked. Mirrors that fail or lack it pass the request on.
    async fn get(
        &self,
        host: &str,
        repo: &str,
        path: &str,
        by_digest: bool,
        limit: usize,
        budget: &Budget,
    ) -> Result<Option<Got>, Error> {
        let endpoints = self.endpoints(host)?;
        let usable = endpoints
            .iter()
            .filter(|e| if by_digest { e.pull } else { e.resolve });
        let mut last = Ok(None);
        for e in usable {
            let base = if e.override_path {
                e.url.clone()
            } else {
                format!("{}/v2", e.url)
            };
            let url = format!("{base}/{repo}/{path}");
            match self.get_one(e, host, repo, &url, limit, budget).await {
                Ok(Some(found)) => return Ok(Some(found)),
                // Over budget is final: no mirror gets more.
                Err(e @ Error::Budget { .. }) => return Err(e),
                // An answer (refused credentials, bad content) outranks a later
                // endpoint's silence: an outage must not hide it.
                other if telling(&other) >= telling(&last) => last = other,
                _ => {}
            }
        }
        last
    }

    async fn get_one(
        &self,
        e: &Endpoint,
        host: &str,
        repo: &str,
        url: &str,
        limit: usize,
        budget: &Budget,
    ) -> Result<Option<Got>, Error> {
        let client = self.http(e)?;
        let token_key = format!("{}\u{0}{repo}", e.url);
        let cached = self
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&token_key)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(t, _)| t.clone());
        let unreachable = |err: reqwest::Error| Error::Unreachable {
            url: url.to_owned(),
            detail: transport_detail(&err),
        };
        let send = |auth: Option<String>| -> Result<_, Error> {
            let left = budget.request(url)?;
            let mut req = client
                .get(url)
                .timeout(left.min(self.timeout))
                .header("Accept", MANIFEST_TYPES.join(", "));
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            Ok(req.send())
        };
        let mut resp = send(cached)?.await.map_err(unreachable)?;
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
            let challenge = header(&resp, "www-authenticate");
            // Credentials of the host that asks for them, after redirects: a mirror never
            // gets the registry's (containerd keys them by the host it talks to, too), nor
            // does a host the registry redirected to.
            let asker = resp.url().clone();
            let (auth, reuse) = self.answer(&challenge, e, &asker, repo, budget).await?;
            if let Some(until) = reuse {
                let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
                if tokens.len() >= MAX_HOSTS {
                    tokens.retain(|_, (_, until)| *until > Instant::now());
                    if tokens.len() >= MAX_HOSTS {
                        tokens.clear();
                    }
                }
                tokens.insert(token_key, (auth.clone(), until));
            }
            resp = send(Some(auth))?.await.map_err(unreachable)?;
        }
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(Error::Unreachable {
                url: url.to_owned(),
                detail: format!("it answered {status}"),
            });
        }
        if !status.is_success() {
            let detail = match status.as_u16() {
                401 | 403 => format!(
                    ": give pullguardd credentials for {host} (registry_auth_file in [daemon])"
                ),
                _ => String::new(),
            };
            return Err(Error::Refused {
                url: url.to_owned(),
                status: status.as_u16(),
                detail,
            });
        }
        let media_type = header(&resp, "content-type");
        let next = next_link(&resp);
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(Error::Oversized {
                url: url.to_owned(),
                limit,
            });
        }
        let bytes = read_capped(resp, limit, url, budget).await?;
        Ok(Some(Got {
            bytes,
            media_type,
            url: url.to_owned(),
            next,
        }))
    }

    /// The `Authorization` value answering a 401's challenge, and until when a bearer
    /// token may be reused.
    async fn answer(
        &self,
        challenge: &str,
        endpoint: &Endpoint,
        asker: &reqwest::Url,
        repo: &str,
        budget: &Budget,
    ) -> Result<(String, Option<Instant>), Error> {
        let host = &auth::host_of(asker.as_str());
        let creds = self.credentials.for_host(host);
        let refused = |detail: String| Error::Refused {
            url: host.to_owned(),
            status: 401,
            detail,
        };
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        let chosen_plain =
            endpoint.url.starts_with("http://") && auth::host_of(&endpoint.url) == *host;
        if creds.is_some() && asker.scheme() != "https" && !chosen_plain {
            // A registry configured for HTTPS that ends up asking over plain HTTP (a
            // redirect): the login would cross the network in clear.
            return Err(Error::UnsafeRealm {
                url: host.to_owned(),
                realm: asker.to_string(),
                why: "over plain HTTP although the registry is reached over HTTPS".to_owned(),
            });
        }
        if scheme.eq_ignore_ascii_case("basic") {
            return creds.map(|c| (auth::basic(c), None)).ok_or_else(|| {
                refused(format!(
                    ": {host} wants a login; put credentials for it into registry_auth_file"
                ))
            });
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(refused(format!(
                ": authentication pullguardd does not speak: {:?}",
                challenge.chars().take(100).collect::<String>()
            )));
        }
        let params = auth::challenge_params(params);
        let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let realm = param("realm")
            .ok_or_else(|| refused(": its bearer challenge names no realm".to_owned()))?;
        let scope = param("scope")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("repository:{repo}:pull"));
        let mut query = vec![("scope", scope.as_str())];
        if let Some(service) = param("service") {
            query.push(("service", service));
        }
        let url = reqwest::Url::parse_with_params(realm, &query)
            .map_err(|e| refused(format!(": its token realm {realm:?} is not a URL: {e}")))?;
        let left = budget.request(realm)?;
        // The token service is asked only where it is as safe as the registry, and at
        // the addresses checked (a second lookup could answer otherwise).
        let pinned = auth::check_realm(asker, &url)
            .await
            .map_err(|why| Error::UnsafeRealm {
                url: asker.to_string(),
                realm: api::capped(realm, 200),
                why,
            })?;
        let client = self.pinned(endpoint, &url, &pinned)?;
        let mut req = client.get(url.clone()).timeout(left.min(self.timeout));
        if let Some(c) = creds {
            req = req.header("Authorization", auth::basic(c));
        }
        let resp = req.send().await.map_err(|e| Error::Unreachable {
            url: realm.to_owned(),
            detail: transport_detail(&e),
        })?;
        if !resp.status().is_success() {
            return Err(Error::Refused {
                url: realm.to_owned(),
                status: resp.status().as_u16(),
                detail: format!(": the token service refused; check the credentials for {host}"),
            });
        }
        let body = read_capped(resp, MAX_TOKEN_ANSWER, realm, budget).await?;
        #[derive(Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let t: Token = serde_json::from_slice(&body).map_err(|e| Error::Invalid {
            url: realm.to_owned(),
            detail: format!("no token JSON: {e}"),
        })?;
        let token = t
            .token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Invalid {
                url: realm.to_owned(),
                detail: "no token".to_owned(),
            })?;
        let reuse = t
            .expires_in
            .map(|s| Duration::from_secs(s.saturating_sub(10)))
            .unwrap_or(TOKEN_REUSE)
            .min(Duration::from_secs(3600));
        Ok((format!("Bearer {token}"), Some(Instant::now() + reuse)))
    }
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

async fn read_capped(
    mut resp: reqwest::Response,
    limit: usize,
    url: &str,
    budget: &Budget,
) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| Error::Unreachable {
        url: url.to_owned(),
        detail: api::error_chain(&e),
    })? {
        if bytes.len() + chunk.len() > limit {
            return Err(Error::Oversized {
                url: url.to_owned(),
                limit,
            });
        }
        budget.bytes(chunk.len(), url)?;
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// How much a GET's outcome says: nothing found < no answer < an answer that refuses.
fn telling<T>(r: &Result<Option<T>, Error>) -> u8 {
    match r {
        Ok(_) => 0,
        Err(e) if e.is_unreachable() => 1,
        Err(_) => 2,
    }
}

/// The `rel="next"` target of a `Link` header (OCI referrers paging), made absolute
/// against the answer's URL, if it stays on that origin.
fn next_link(resp: &reqwest::Response) -> Option<String> {
    next_in(resp.headers().get("link")?.to_str().ok()?, resp.url())
}

/// [`next_link`] of a header value, against `base`.
fn next_in(link: &str, base: &reqwest::Url) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            })
            .then_some(())?;
        let next = base.join(target).ok()?;
        // A registry may page; it may not send the lookup (and its credentials) elsewhere.
        (next.origin() == base.origin()).then(|| next.to_string())
    })
}

/// A transport error as text, with what to do when the cause is a common setup mistake:
/// a plain-HTTP registry asked over HTTPS (rustls sees an HTTP answer as a corrupt TLS
/// record).
fn transport_detail(e: &reqwest::Error) -> String {
    let chain = api::error_chain(e);
    if chain.contains("InvalidContentType") {
        format!("{chain}; the server answered plain HTTP on a TLS connection: a plain-HTTP registry must be declared in a hosts.toml (server = \"http://HOST:PORT\") under [daemon] registry_config_path, as containerd has it")
    } else {
        chain
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// DNS rebinding: a realm name that resolves to a public address when check_realm
    /// looks and to a metadata address when the request connects. The token request's
    /// client connects only to the addresses judged: here the realm's name resolves
    /// nowhere (`.invalid`), so the request can only arrive through the pinned address,
    /// and its redirect (to a metadata address) is not followed.
    #[tokio::test]
    async fn dns_rebinding_the_token_request_connects_only_to_the_checked_address() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = vec![0u8; 4096];
            let n = s.read(&mut head).await.unwrap();
            s.write_all(
                b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data\r\nContent-Length: 0\r\n\r\n",
            )
            .await
            .unwrap();
            String::from_utf8_lossy(&head[..n]).into_owned()
        });
        let (client, _) = Client::new(None, None, Duration::from_secs(5)).unwrap();
        let endpoint = Endpoint {
            url: "http://registry.rebinding.invalid".to_owned(),
            override_path: false,
            resolve: true,
            pull: true,
            ca: Vec::new(),
            skip_verify: false,
        };
        let realm = reqwest::Url::parse(&format!(
            "http://realm.rebinding.invalid:{}/token",
            addr.port()
        ))
        .unwrap();
        let pinned = client.pinned(&endpoint, &realm, &[addr]).unwrap();
        let resp = pinned.get(realm).send().await.unwrap();
        assert_eq!(
            resp.status(),
            reqwest::StatusCode::FOUND,
            "the redirect was followed"
        );
        let head = server.await.unwrap();
        assert!(
            head.to_ascii_lowercase()
                .contains("host: realm.rebinding.invalid"),
            "{head}"
        );
    }

    #[test]
    fn errors_not_all_unreachable_only_an_outage_is_transient() {
        let e = |status| Error::Refused {
            url: "u".into(),
            status,
            detail: String::new(),
        };
        let cases = [
            (
                Error::Unreachable {
                    url: "u".into(),
                    detail: "timeout".into(),
                },
                ErrorClass::Unavailable,
            ),
            (e(401), ErrorClass::Credentials),
            (e(403), ErrorClass::Credentials),
            (e(400), ErrorClass::Content),
            (e(404), ErrorClass::Content),
            (
                Error::Oversized {
                    url: "u".into(),
                    limit: 1,
                },
                ErrorClass::Content,
            ),
            (
                Error::Invalid {
                    url: "u".into(),
                    detail: "a blob hashing to another digest".into(),
                },
                ErrorClass::Content,
            ),
            (
                Error::HostsFile {
                    path: "p".into(),
                    detail: "d".into(),
                },
                ErrorClass::Config,
            ),
            (
                Error::UnsafeRealm {
                    url: "u".into(),
                    realm: "http://r".into(),
                    why: "w".into(),
                },
                ErrorClass::Credentials,
            ),
            (
                Error::Budget {
                    url: "u".into(),
                    what: "w".into(),
                },
                ErrorClass::Budget,
            ),
        ];
        for (err, class) in cases {
            assert_eq!(err.class(), class, "{err}");
            assert_eq!(
                err.is_unreachable(),
                class == ErrorClass::Unavailable,
                "{err}"
            );
        }
    }

    #[test]
    fn hosts_toml_is_read_once_per_client_not_per_request() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("registry.test");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("hosts.toml"),
            "server = \"http://127.0.0.1:5000\"\n",
        )
        .unwrap();
        let (client, _) = Client::new(Some(d.path()), None, Duration::from_secs(1)).unwrap();
        assert_eq!(
            client.endpoints("registry.test").unwrap()[0].url,
            "http://127.0.0.1:5000"
        );
        // Changed on disk: this client (this policy generation) keeps what it read; a
        // reload makes a new client, which reads it again.
        std::fs::write(
            dir.join("hosts.toml"),
            "server = \"http://127.0.0.1:6000\"\n",
        )
        .unwrap();
        assert_eq!(
            client.endpoints("registry.test").unwrap()[0].url,
            "http://127.0.0.1:5000"
        );
        let (fresh, _) = Client::new(Some(d.path()), None, Duration::from_secs(1)).unwrap();
        assert_eq!(
            fresh.endpoints("registry.test").unwrap()[0].url,
            "http://127.0.0.1:6000"
        );
    }

    #[test]
    fn a_budget_counts_requests_bytes_and_time() {
        let b = Budget::new(2, 10, Duration::from_secs(60));
        assert!(b.request("u").is_ok() && b.request("u").is_ok());
        assert!(matches!(b.request("u"), Err(Error::Budget { .. })));
        assert!(b.bytes(10, "u").is_ok());
        assert!(matches!(b.bytes(1, "u"), Err(Error::Budget { .. })));
        let late = Budget::new(5, 5, Duration::ZERO);
        assert!(matches!(late.request("u"), Err(Error::Budget { .. })));
    }

    #[test]
    fn referrers_pages_follow_rel_next_on_the_same_origin_only() {
        let base = reqwest::Url::parse("https://reg.test/v2/app/referrers/sha256:ab").unwrap();
        assert_eq!(
            next_in(
                r#"</v2/app/referrers/sha256:ab?n=10&last=x>; rel="next""#,
                &base
            )
            .as_deref(),
            Some("https://reg.test/v2/app/referrers/sha256:ab?n=10&last=x")
        );
        assert_eq!(
            next_in(
                r#"<https://reg.test/p2>; rel=prev, <https://reg.test/p3>; rel=next"#,
                &base
            )
            .as_deref(),
            Some("https://reg.test/p3")
        );
        assert_eq!(
            next_in(r#"<https://attacker.test/p2>; rel="next""#, &base),
            None
        );
        assert_eq!(
            next_in(r#"<http://reg.test/p2>; rel="next""#, &base),
            None,
            "scheme"
        );
        assert_eq!(next_in(r#"</p2>; rel="prev""#, &base), None);
        assert_eq!(next_in("garbage", &base), None);
    }
}
