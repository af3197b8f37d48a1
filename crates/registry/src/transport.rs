//! HTTP for the client: TLS per hosts.toml, GETs over mirrors with auth challenges and
//! tokens, bounded reads, referrers paging links.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::*;

impl Client {
    pub(crate) fn http(&self, e: &Endpoint) -> Result<reqwest::Client, Error> {
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
        addrs: &[std::net::SocketAddr],
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

    pub(crate) fn ca_file(&self, ca: &Path) -> Result<Vec<reqwest::Certificate>, Error> {
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

    pub(crate) fn builder(&self, e: &Endpoint) -> Result<reqwest::ClientBuilder, Error> {
        // rustls with ring, as everywhere in pullguard; an error only says a provider is
        // installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
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

    /// GET `path` under `repo` from the first endpoint that answers; `None` on 404 from
    /// the last one asked. Mirrors that fail or lack it pass the request on.
    pub(crate) async fn get(
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

    pub(crate) async fn get_one(
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
    pub(crate) async fn answer(
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
                realm: codes::text::capped(realm, 200),
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

pub(crate) fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    limit: usize,
    url: &str,
    budget: &Budget,
) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| Error::Unreachable {
        url: url.to_owned(),
        detail: codes::text::error_chain(&e),
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
pub(crate) fn telling<T>(r: &Result<Option<T>, Error>) -> u8 {
    match r {
        Ok(_) => 0,
        Err(e) if e.is_unreachable() => 1,
        Err(_) => 2,
    }
}

/// The `rel="next"` target of a `Link` header (OCI referrers paging), made absolute
/// against the answer's URL, if it stays on that origin.
pub(crate) fn next_link(resp: &reqwest::Response) -> Option<String> {
    next_in(resp.headers().get("link")?.to_str().ok()?, resp.url())
}

/// [`next_link`] of a header value, against `base`.
pub(crate) fn next_in(link: &str, base: &reqwest::Url) -> Option<String> {
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
pub(crate) fn transport_detail(e: &reqwest::Error) -> String {
    let chain = codes::text::error_chain(e);
    if chain.contains("InvalidContentType") {
        format!("{chain}; the server answered plain HTTP on a TLS connection: a plain-HTTP registry must be declared in a hosts.toml (server = \"http://HOST:PORT\") under [daemon] registry_config_path, as containerd has it")
    } else {
        chain
    }
}
