//! The seam between the client's loops (transport.rs: mirrors, auth challenges, tokens,
//! paging, limits) and HTTP itself: a [`Wire`] answers one GET. pullguardd's is reqwest
//! ([`Reqwest`]: TLS per hosts.toml, pooled connections, pinned token requests); the unit
//! tests script answers through the same trait, so that the loops are tested on their
//! own (tests.rs), beside the real-registry tests of crates/daemon.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{Endpoint, Error};

/// A boxed future of the wire.
pub(crate) type Fut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One GET.
pub(crate) struct Get<'a> {
    /// The endpoint whose TLS settings apply.
    pub endpoint: &'a Endpoint,
    pub url: &'a str,
    pub accept: Option<String>,
    pub authorization: Option<String>,
    pub timeout: Duration,
    /// A token request: connect only to these addresses (those judged by
    /// auth::check_realm) and follow no redirect.
    pub pinned: Option<&'a [SocketAddr]>,
}

/// An answer: status and headers at once, the body chunk by chunk (so that limits apply
/// while it streams).
pub(crate) trait Answer: Send {
    fn status(&self) -> u16;
    /// The URL that answered, after redirects.
    fn url(&self) -> &reqwest::Url;
    /// A header's value, or "" (not text, or absent).
    fn header(&self, name: &str) -> String;
    fn content_length(&self) -> Option<u64>;
    /// The next piece of the body; `None` at its end.
    fn chunk(&mut self) -> Fut<'_, Result<Option<Vec<u8>>, String>>;
}

/// HTTP GETs.
pub(crate) trait Wire: Send + Sync {
    /// Sends `req`: an answer whatever its status, or `Error::Unreachable` (no answer)
    /// or `Error::BadCa` (the endpoint's TLS settings cannot be used).
    fn get<'a>(&'a self, req: Get<'a>) -> Fut<'a, Result<Box<dyn Answer>, Error>>;
}

/// The wire of pullguardd: reqwest with rustls.
pub(crate) struct Reqwest {
    timeout: Duration,
    /// HTTP clients per TLS configuration (CA files, skip_verify).
    http: Mutex<HashMap<(Vec<PathBuf>, bool), reqwest::Client>>,
    /// The CA certificates hosts.toml names, read once per policy generation.
    cas: Mutex<HashMap<PathBuf, Vec<reqwest::Certificate>>>,
}

impl Reqwest {
    pub(crate) fn new(timeout: Duration) -> Reqwest {
        Reqwest {
            timeout,
            http: Mutex::default(),
            cas: Mutex::default(),
        }
    }

    fn http(&self, e: &Endpoint) -> Result<reqwest::Client, Error> {
        if e.ca.is_empty() && !e.skip_verify {
            return system_roots(self.timeout);
        }
        let key = (e.ca.clone(), e.skip_verify);
        let mut map = self.http.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(&key) {
            return Ok(c.clone());
        }
        let c = self.builder(e)?.build().map_err(|err| Error::BadCa {
            path: format!("{:?}", e.ca),
            detail: codes::text::error_chain(&err),
        })?;
        map.insert(key, c.clone());
        Ok(c)
    }

    /// A client for one token request that connects to `url`'s host only at `addrs`
    /// (those check_realm judged) and follows no redirect. Token requests are rare
    /// (tokens are reused), so it is built each time.
    pub(crate) fn pinned(
        &self,
        e: &Endpoint,
        url: &reqwest::Url,
        addrs: &[SocketAddr],
    ) -> Result<reqwest::Client, Error> {
        let host = url.host_str().unwrap_or_default();
        self.builder(e)?
            .redirect(reqwest::redirect::Policy::none())
            .resolve_to_addrs(host.trim_start_matches('[').trim_end_matches(']'), addrs)
            .build()
            .map_err(|err| Error::BadCa {
                path: format!("{:?}", e.ca),
                detail: codes::text::error_chain(&err),
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
        let mut b = base_builder(self.timeout);
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
}

/// What every client of the registries has: rustls, timeouts, redirects, pooling.
fn base_builder(timeout: Duration) -> reqwest::ClientBuilder {
    // rustls with ring, as everywhere in pullguard; an error only says a provider is
    // installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout)
        .min_tls_version(reqwest::tls::Version::TLS_1_2)
        // Blobs are often redirected to storage; a few hops at most.
        .redirect(reqwest::redirect::Policy::limited(3))
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("pullguardd/", env!("CARGO_PKG_VERSION")))
}

/// The client of every endpoint verified with the system's roots (no CA file, TLS
/// checked), per timeout. Building one reads and parses the system's root store, 4–12
/// ms on the bench machine (bench/results/notes.md) — the largest part of a cold cosign
/// or Notation verdict when each generation built its own on first use. So it is built
/// when a policy generation is prepared ([`refresh`]: a reload re-reads the root store,
/// as an operator who distrusted a CA expects) and verdicts only take it.
static SYSTEM_ROOTS: Mutex<Vec<(Duration, reqwest::Client, Instant)>> = Mutex::new(Vec::new());

fn system_roots(timeout: Duration) -> Result<reqwest::Client, Error> {
    // Held while building, so that verdicts arriving together before any generation
    // built it build one client, not one each.
    let mut clients = SYSTEM_ROOTS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, c, _)) = clients.iter().find(|(t, _, _)| *t == timeout) {
        return Ok(c.clone());
    }
    let c = build_system_roots(timeout)?;
    keep(&mut clients, timeout, c.clone());
    Ok(c)
}

fn build_system_roots(timeout: Duration) -> Result<reqwest::Client, Error> {
    base_builder(timeout).build().map_err(|err| Error::BadCa {
        path: "the system's root certificates".to_owned(),
        detail: codes::text::error_chain(&err),
    })
}

fn keep(
    clients: &mut Vec<(Duration, reqwest::Client, Instant)>,
    timeout: Duration,
    c: reqwest::Client,
) {
    clients.retain(|(t, _, _)| *t != timeout);
    // A few timeouts at most (one per policy edit of registry_timeout).
    if clients.len() >= 4 {
        clients.remove(0);
    }
    clients.push((timeout, c, Instant::now()));
}

/// Builds the client of [`system_roots`] again, reading the root store now, and puts
/// it in place of the one before (verdicts meanwhile keep using that one). Each kind
/// of proof that asks registries calls this when a generation is prepared: one built
/// within the last second is that generation's already.
pub(crate) fn refresh(timeout: Duration) {
    let fresh = SYSTEM_ROOTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .any(|(t, _, built)| *t == timeout && built.elapsed() < Duration::from_secs(1));
    if fresh {
        return;
    }
    match build_system_roots(timeout) {
        Ok(c) => keep(
            &mut SYSTEM_ROOTS.lock().unwrap_or_else(|p| p.into_inner()),
            timeout,
            c,
        ),
        Err(e) => tracing::warn!(error = %e, "registry client"),
    }
}

impl Wire for Reqwest {
    fn get<'a>(&'a self, req: Get<'a>) -> Fut<'a, Result<Box<dyn Answer>, Error>> {
        Box::pin(async move {
            let client = match req.pinned {
                Some(addrs) => {
                    let url = reqwest::Url::parse(req.url).map_err(|e| Error::Invalid {
                        url: codes::text::capped(req.url, 200),
                        detail: format!("not a URL: {e}"),
                    })?;
                    self.pinned(req.endpoint, &url, addrs)?
                }
                None => self.http(req.endpoint)?,
            };
            let mut r = client.get(req.url).timeout(req.timeout);
            if let Some(a) = req.accept {
                r = r.header("Accept", a);
            }
            if let Some(a) = req.authorization {
                r = r.header("Authorization", a);
            }
            let resp = r.send().await.map_err(|e| Error::Unreachable {
                url: req.url.to_owned(),
                detail: transport_detail(&e),
            })?;
            Ok(Box::new(ReqwestAnswer(resp)) as Box<dyn Answer>)
        })
    }
}

struct ReqwestAnswer(reqwest::Response);

impl Answer for ReqwestAnswer {
    fn status(&self) -> u16 {
        self.0.status().as_u16()
    }

    fn url(&self) -> &reqwest::Url {
        self.0.url()
    }

    fn header(&self, name: &str) -> String {
        self.0
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    }

    fn content_length(&self) -> Option<u64> {
        self.0.content_length()
    }

    fn chunk(&mut self) -> Fut<'_, Result<Option<Vec<u8>>, String>> {
        Box::pin(async move {
            self.0
                .chunk()
                .await
                .map(|c| c.map(|b| b.to_vec()))
                .map_err(|e| codes::text::error_chain(&e))
        })
    }
}

/// A transport error as text, with what to do when the cause is a common setup mistake:
/// a plain-HTTP registry asked over HTTPS (rustls sees an HTTP answer as a corrupt TLS
/// record).
pub(crate) fn transport_detail(e: &reqwest::Error) -> String {
    let chain = codes::text::error_chain(e);
    if chain.contains("InvalidContentType") {
        format!("{chain}; the server answered plain HTTP on a TLS connection: a plain-HTTP registry must be declared in a hosts.toml (server = \"http://HOST:PORT\") under [daemon] registry_config_path, as containerd has it")
    } else {
        chain
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn built(timeout: Duration) -> Option<Instant> {
        SYSTEM_ROOTS
            .lock()
            .unwrap()
            .iter()
            .find(|(t, _, _)| *t == timeout)
            .map(|(_, _, b)| *b)
    }

    #[test]
    fn each_policy_generation_reads_the_root_store_again_and_its_kinds_share_one_read() {
        // A timeout no other test uses: the clients are per process.
        let timeout = Duration::from_millis(4321);
        refresh(timeout);
        let first = built(timeout).unwrap();
        system_roots(timeout).unwrap();
        // A second kind of proof preparing the same generation.
        refresh(timeout);
        assert_eq!(
            built(timeout),
            Some(first),
            "one generation read the store twice"
        );
        // The next generation (a reload after the node's CAs changed) reads it again.
        std::thread::sleep(Duration::from_millis(1100));
        refresh(timeout);
        assert!(
            built(timeout).unwrap() > first,
            "a reload kept the client built from the old root store"
        );
    }
}
