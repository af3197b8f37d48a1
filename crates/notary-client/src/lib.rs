//! The Notary v1 client: the one place that speaks notary-server's HTTP API, used by
//! pullguardd (verdicts) and the CLI (inspect, sign). Fetches a repository's trust data
//! from a notary-server:
//! `GET <url>/v2/<gun>/_trust/tuf/<role>.json` and `<N>.root.json`.
//!
//! Sizes are capped while streaming, before anything is parsed: root and timestamp at
//! trust-core's limits, snapshot, targets and targets/releases at its file limit, the
//! others at the length the snapshot lists (unverified here; trust-core checks every
//! length exactly).

#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use trust_core::{Limits, RepoFiles};

/// Why trust data could not be fetched.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// The server has no trust data for the repository (404).
    #[error("{server} has no trust data for {gun} (404): the repository is not signed")]
    NotFound {
        /// Server URL.
        server: String,
        /// Repository.
        gun: String,
    },
    /// Connection, TLS, timeout or server error.
    #[error("cannot fetch {file} from {server}: {detail}")]
    Unreachable {
        /// Server URL.
        server: String,
        /// The file.
        file: String,
        /// What happened.
        detail: String,
    },
    /// A file is larger than allowed.
    #[error("{file} from {server} is larger than {limit} bytes")]
    TooLarge {
        /// Server URL.
        server: String,
        /// The file.
        file: String,
        /// The cap.
        limit: u64,
    },
    /// A repository's files together are more than a fetch reads before verifying any.
    #[error("the trust data of {gun} from {server} is more than {limit} bytes in all; nothing of it is verified before it is read, so it is refused")]
    TooMuch {
        /// Server URL.
        server: String,
        /// Repository.
        gun: String,
        /// The cap.
        limit: u64,
    },
    /// An upload did not reach the server or got no answer; nothing was published.
    #[error("cannot upload to {server}: {detail}; nothing was published")]
    UploadFailed {
        /// Server URL.
        server: String,
        /// What happened.
        detail: String,
    },
    /// The server refused an upload; the remote trust data is unchanged.
    #[error(
        "{server} refused the update (HTTP {status}): {detail}; the remote trust data is unchanged"
    )]
    Refused {
        /// Server URL.
        server: String,
        /// HTTP status.
        status: u16,
        /// The server's reason.
        detail: String,
    },
    /// The trust server's CA file cannot be used.
    #[error("trust server {server}: ca_file {path}: {detail}")]
    BadCa {
        /// Server name.
        server: String,
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
}

/// A server's key answer is a few hundred bytes; its error bodies are short too.
const MAX_KEY_ANSWER: usize = 256 * 1024;
const MAX_ERROR_ANSWER: usize = 64 * 1024;

/// The body, up to `limit` bytes: `Err(None)` when it is longer, `Err(Some(why))` when
/// reading failed.
async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, Option<String>> {
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| Some(codes::text::error_chain(&e)))?
    {
        if out.len() + chunk.len() > limit {
            return Err(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Makes ring the process's TLS crypto provider: one crypto stack (ring also verifies
/// P-256 and RSA signatures in trust-core), and reqwest panics building a client when
/// no provider is installed. Call before building any HTTP client (the CLI's registry
/// client too); later calls do nothing.
pub fn use_ring_for_tls() {
    // An error only says a provider is installed already, which is what is wanted.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client for one trust server.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    url: String,
    limits: Limits,
}

impl Fetcher {
    /// A client for the trust server `name` (the policy's name for it, for messages) at
    /// `url`, with its CA (the only roots trusted for it, when set) and connect and read
    /// `timeout`; TLS 1.2 or later.
    pub fn new(
        name: &str,
        url: &str,
        ca_file: Option<&std::path::Path>,
        timeout: Duration,
    ) -> Result<Fetcher, FetchError> {
        use_ring_for_tls();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .min_tls_version(reqwest::tls::Version::TLS_1_2)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            // A cold fetch asks for five files at once; idle connections beyond that
            // would only hold descriptors after a burst of cold repositories.
            .pool_max_idle_per_host(5)
            .user_agent(concat!("pullguardd/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = ca_file {
            let bad = |detail: String| FetchError::BadCa {
                server: name.to_owned(),
                path: ca.display().to_string(),
                detail,
            };
            let pem = std::fs::read(ca).map_err(|e| bad(e.to_string()))?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("no PEM certificate in it".to_owned()));
            }
            // The CA file is a pin: it replaces the system's roots for this server, so
            // that a publicly trusted certificate for the server's name is not enough.
            builder = builder.tls_certs_only(certs);
        }
        let client = builder.build().map_err(|e| FetchError::BadCa {
            server: name.to_owned(),
            path: String::new(),
            detail: e.to_string(),
        })?;
        Ok(Fetcher {
            client,
            url: url.to_owned(),
            limits: Limits::default(),
        })
    }

    /// One file of `gun`, up to `limit` bytes, each byte read also taken from `budget`,
    /// shared by the files of one fetch: none of them is verified until all are read.
    async fn get_within(
        &self,
        gun: &str,
        file: &str,
        limit: u64,
        budget: &AtomicU64,
    ) -> Result<Option<Vec<u8>>, FetchError> {
        let url = format!("{}/v2/{gun}/_trust/tuf/{file}", self.url);
        let unreachable = |detail: String| FetchError::Unreachable {
            server: self.url.clone(),
            file: file.to_owned(),
            detail,
        };
        let mut resp = match self.client.get(&url).send().await {
            Ok(r) => r,
            // A kept-alive connection the server had already closed: the request never
            // got an answer, so it is sent once more, on a new connection. A timeout is
            // not retried (it has used the budget).
            Err(e) if !e.is_timeout() && (e.is_request() || e.is_connect()) => self
                .client
                .get(&url)
                .send()
                .await
                .map_err(|e| unreachable(error_chain(&e)))?,
            Err(e) => return Err(unreachable(error_chain(&e))),
        };
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(unreachable(format!("HTTP {}", resp.status())));
        }
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(FetchError::TooLarge {
                server: self.url.clone(),
                file: file.to_owned(),
                limit,
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| unreachable(error_chain(&e)))?
        {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(FetchError::TooLarge {
                    server: self.url.clone(),
                    file: file.to_owned(),
                    limit,
                });
            }
            let n = chunk.len() as u64;
            if budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                    left.checked_sub(n)
                })
                .is_err()
            {
                return Err(FetchError::TooMuch {
                    server: self.url.clone(),
                    gun: gun.to_owned(),
                    limit: MAX_FETCH_BYTES,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The public key the server holds for `role` of `gun` (`timestamp`, or `snapshot`
    /// when the server manages it): `(keytype, public key bytes)`. The server makes one
    /// if the repository is new; `rotate` asks it for a new one. Unverified: the caller
    /// checks the key and lists it in a root it signs.
    pub async fn server_key(
        &self,
        gun: &str,
        role: &str,
        rotate: bool,
    ) -> Result<(String, Vec<u8>), FetchError> {
        use base64::Engine as _;
        let file = format!("{role}.key");
        let url = format!("{}/v2/{gun}/_trust/tuf/{file}", self.url);
        let unreachable = |detail: String| FetchError::Unreachable {
            server: self.url.clone(),
            file: file.clone(),
            detail,
        };
        let request = if rotate {
            self.client.post(&url)
        } else {
            self.client.get(&url)
        };
        let resp = request
            .send()
            .await
            .map_err(|e| unreachable(codes::text::error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(unreachable(format!("HTTP {}", resp.status())));
        }
        let body = read_capped(resp, MAX_KEY_ANSWER)
            .await
            .map_err(|e| unreachable(e.unwrap_or_else(|| "an oversized key".to_owned())))?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| unreachable(e.to_string()))?;
        let keytype = v["keytype"].as_str().unwrap_or_default().to_owned();
        let public = v["keyval"]["public"]
            .as_str()
            .and_then(|p| base64::engine::general_purpose::STANDARD.decode(p).ok())
            .ok_or_else(|| unreachable("a key without a public part".to_owned()))?;
        Ok((keytype, public))
    }

    /// Uploads changed role files for `gun` in one multipart POST, which notary-server
    /// applies whole or not at all: `Refused` means the remote trust data is unchanged.
    pub async fn upload(&self, gun: &str, files: &[(String, Vec<u8>)]) -> Result<(), FetchError> {
        let mut form = reqwest::multipart::Form::new();
        for (role, bytes) in files {
            let part = reqwest::multipart::Part::bytes(bytes.clone())
                .file_name(role.clone())
                .mime_str("application/octet-stream")
                .map_err(|e| FetchError::Unreachable {
                    server: self.url.clone(),
                    file: role.clone(),
                    detail: codes::text::error_chain(&e),
                })?;
            form = form.part("files", part);
        }
        let url = format!("{}/v2/{gun}/_trust/tuf/", self.url);
        let resp = self
            .client
            .post(&url)
            .multipart(form)
            .send()
            .await
            .map_err(|e| FetchError::UploadFailed {
                server: self.url.clone(),
                detail: codes::text::error_chain(&e),
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        // notary-server says why as `{"errors": [{"message": …, "detail": …}]}`.
        let body = read_capped(resp, MAX_ERROR_ANSWER)
            .await
            .unwrap_or_default();
        let detail = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                let e = v["errors"].get(0)?.clone();
                Some(format!(
                    "{} {}",
                    e["message"].as_str().unwrap_or_default(),
                    e.get("detail").map(ToString::to_string).unwrap_or_default()
                ))
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned());
        Err(FetchError::Refused {
            server: self.url.clone(),
            status: status.as_u16(),
            detail: detail.trim().to_owned(),
        })
    }

    /// Opens five connections ahead of the first verdict (a repository's first fetch
    /// asks for five files at once): on loopback a TLS handshake costs as much as the fetch
    /// that follows it. Errors are ignored; the verdict's own fetch reports them. Idle
    /// connections are closed after a minute, so this helps the pulls of a node's boot
    /// and of the minute after a reload.
    pub async fn warm(&self) {
        let url = format!("{}/_notary_server/health", self.url);
        let one = || async {
            if let Ok(resp) = self.client.get(&url).send().await {
                // Read the (small) body, so that the connection goes back to the pool.
                let _ = resp.bytes().await;
            }
        };
        tokio::join!(one(), one(), one(), one(), one());
    }

    /// Fetches everything needed to verify `gun`. `trusted_root_version` is the root
    /// version already trusted: every `N.root.json` after it is fetched too.
    ///
    /// One round trip for most repositories: root, timestamp, snapshot, targets and
    /// `targets/releases` together; a second only for other delegations and the
    /// intermediate roots after a rotation (a few at a time, each read capped by the
    /// length the snapshot lists).
    pub async fn fetch(
        &self,
        gun: &str,
        trusted_root_version: Option<u64>,
    ) -> Result<RepoFiles, FetchError> {
        use futures_util::StreamExt as _;
        let not_found = || FetchError::NotFound {
            server: self.url.clone(),
            gun: gun.to_owned(),
        };
        // Lengths listed by a timestamp or snapshot not verified yet would be no tighter
        // caps, so everything most repositories need is asked for at once: root,
        // timestamp, snapshot, targets, and the delegation Docker signs in.
        let budget = Arc::new(AtomicU64::new(MAX_FETCH_BYTES));
        let (root, timestamp, snapshot, targets, releases) = tokio::join!(
            self.get_within(gun, "root.json", self.limits.root + 1, &budget),
            self.get_within(gun, "timestamp.json", self.limits.timestamp + 1, &budget),
            self.get_within(gun, "snapshot.json", self.limits.file, &budget),
            self.get_within(gun, "targets.json", self.limits.file, &budget),
            self.get_within(gun, "targets/releases.json", self.limits.file, &budget),
        );
        let root = root?.ok_or_else(not_found)?;
        let timestamp = timestamp?.ok_or_else(not_found)?;
        let snapshot = snapshot?.ok_or_else(not_found)?;
        let targets = targets?.ok_or_else(not_found)?;
        let listed = listed_delegations(&snapshot);
        // Kept only when the snapshot lists it: otherwise it was never asked for.
        let releases = match releases {
            Ok(Some(bytes)) if listed.iter().any(|(r, _)| r == "targets/releases") => Some(bytes),
            Ok(_) => None,
            Err(e) => return Err(e),
        };

        // The rest: other delegations, and the roots between the trusted one and this.
        // (name in RepoFiles, file on the server, read cap)
        let mut wanted = Vec::new();
        for (role, len) in listed {
            if role == "targets/releases" && releases.is_some() {
                continue;
            }
            wanted.push((
                role.clone(),
                format!("{role}.json"),
                len.min(self.limits.file),
            ));
        }
        if let (Some(from), Some(to)) = (trusted_root_version, version_of(&root)) {
            for v in intermediate_roots(from, to, self.limits.root_rotations) {
                wanted.push((
                    format!("{v}.root"),
                    format!("{v}.root.json"),
                    self.limits.root + 1,
                ));
            }
        }
        // Owned futures: a stream of borrowing ones is not provably Send to the spawner.
        let got: Vec<_> = futures_util::stream::iter(wanted.clone())
            .map(|(_, file, cap)| {
                let (me, gun, budget) = (self.clone(), gun.to_owned(), budget.clone());
                async move { me.get_within(&gun, &file, cap, &budget).await }
            })
            .buffered(FETCH_CONCURRENCY)
            .collect()
            .await;
        let mut files = RepoFiles::new();
        for ((name, _, _), bytes) in wanted.into_iter().zip(got) {
            // A delegation or an old root the server does not have: trust-core decides
            // what that means.
            if let Some(bytes) = bytes? {
                files.insert(name, bytes);
            }
        }
        if let Some(bytes) = releases {
            files.insert("targets/releases", bytes);
        }
        files.insert("root", root);
        files.insert("timestamp", timestamp);
        files.insert("snapshot", snapshot);
        files.insert("targets", targets);
        Ok(files)
    }
}

/// Requests in flight at once for one repository's files after the snapshot.
const FETCH_CONCURRENCY: usize = 8;

/// Bytes one fetch reads in all, across its files: none is verified before all are
/// read, so without it a server could have a node hold a file limit's worth for every
/// role and delegation its unverified snapshot names. Real repositories are far below
/// (10,000 tags in three delegations: about 2 MiB).
pub const MAX_FETCH_BYTES: u64 = 128 * 1024 * 1024;

/// The root versions to fetch between the trusted `from` and the newest `to`. `to` is
/// not verified yet: a walk longer than trust-core accepts is not fetched at all (it is
/// refused there), whatever version the server claims.
fn intermediate_roots(from: u64, to: u64, limit: u64) -> std::ops::Range<u64> {
    if to.saturating_sub(from) > limit {
        return 0..0;
    }
    from.saturating_add(1)..to
}

// What the unverified root and snapshot say is read with trust-core's own parsers (no
// second Notary parser here); trust-core verifies all of it afterwards. Unparsable
// files give no hints, and trust-core then says what is wrong with them.
fn version_of(bytes: &[u8]) -> Option<u64> {
    trust_core::metadata::parse_root("root", bytes)
        .ok()
        .map(|r| r.body.common.version)
}

fn listed_delegations(snapshot: &[u8]) -> Vec<(String, u64)> {
    let Ok(snap) = trust_core::metadata::parse_meta_role("snapshot", "Snapshot", snapshot) else {
        return Vec::new();
    };
    snap.body
        .meta
        .into_iter()
        .filter(|(name, _)| name.starts_with("targets/"))
        .map(|(name, m)| (name, m.length))
        .take(Limits::default().delegations)
        .collect()
}

pub use codes::text::error_chain;

#[cfg(test)]
mod tests {
    use super::intermediate_roots;

    #[test]
    fn a_claimed_root_version_far_ahead_fetches_no_intermediate_roots() {
        assert_eq!(intermediate_roots(1, 4, 256), 2..4);
        assert_eq!(intermediate_roots(1, 257, 256), 2..257);
        // An unverified root.json naming version 2^63 once built a list of every
        // version in between before any request: memory until the daemon was killed.
        assert!(intermediate_roots(1, i64::MAX as u64, 256).is_empty());
        assert!(intermediate_roots(1, u64::MAX, 256).is_empty());
        assert!(intermediate_roots(5, 3, 256).is_empty());
    }
}
