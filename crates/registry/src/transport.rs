//! The client's loops over the wire (wire.rs): GETs over mirrors with auth challenges
//! and tokens, bounded reads, referrers paging links.

use std::time::{Duration, Instant};

use crate::wire::{Answer, Get};
use crate::*;

impl Client {
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
        // Tokens are kept per origin that issued the challenge, and per repository.
        let token_key = |origin: &str| format!("{origin}\u{0}{repo}");
        let asked = reqwest::Url::parse(url).ok().as_ref().and_then(origin_of);
        let cached = asked.as_ref().and_then(|origin| {
            self.tokens
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&token_key(origin))
                .filter(|(_, until)| *until > Instant::now())
                .map(|(t, _)| t.clone())
        });
        let mut resp = self.send(e, url, cached, budget).await?;
        if resp.status() == 401 {
            let challenge = resp.header("www-authenticate");
            // Credentials of the host that asks for them, after redirects: a mirror never
            // gets the registry's (containerd keys them by the host it talks to, too), nor
            // does a host the registry redirected to.
            let asker = resp.url().clone();
            let (auth, reuse) = self.answer(&challenge, e, &asker, repo, budget).await?;
            // The answer goes back to the origin that asked, and only there: sent to the
            // URL first asked, a host that redirected to the asker would receive its login
            // (Basic), or a token minted with it for a repository of its choosing.
            let origin = origin_of(&asker);
            let again = if origin.is_some() && origin == asked {
                url.to_owned()
            } else {
                asker.to_string()
            };
            if let (Some(until), Some(origin)) = (reuse, &origin) {
                let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
                if tokens.len() >= MAX_HOSTS {
                    tokens.retain(|_, (_, until)| *until > Instant::now());
                    if tokens.len() >= MAX_HOSTS {
                        tokens.clear();
                    }
                }
                tokens.insert(token_key(origin), (auth.clone(), until));
            }
            resp = self.send(e, &again, Some(auth), budget).await?;
        }
        let status = resp.status();
        if status == 404 {
            return Ok(None);
        }
        if status >= 500 || status == 429 {
            return Err(Error::Unreachable {
                url: url.to_owned(),
                detail: format!("it answered {}", status_text(status)),
            });
        }
        if !(200..300).contains(&status) {
            let detail = match status {
                401 | 403 => format!(
                    ": give pullguardd credentials for {host} (registry_auth_file in [daemon])"
                ),
                _ => String::new(),
            };
            return Err(Error::Refused {
                url: url.to_owned(),
                status,
                detail,
            });
        }
        let media_type = resp.header("content-type");
        let next = next_in(&resp.header("link"), resp.url());
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

    /// One GET of `url`, counted against the budget.
    pub(crate) async fn send(
        &self,
        e: &Endpoint,
        url: &str,
        authorization: Option<String>,
        budget: &Budget,
    ) -> Result<Box<dyn Answer>, Error> {
        let left = budget.request(url)?;
        self.wire
            .get(Get {
                endpoint: e,
                url,
                accept: Some(MANIFEST_TYPES.join(", ")),
                authorization,
                timeout: left.min(self.timeout),
                pinned: None,
            })
            .await
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
        let resp = self
            .wire
            .get(Get {
                endpoint,
                url: url.as_str(),
                accept: None,
                authorization: creds.map(auth::basic),
                timeout: left.min(self.timeout),
                pinned: Some(&pinned),
            })
            .await
            .map_err(|e| match e {
                // Said of the realm, not of the URL with its query.
                Error::Unreachable { detail, .. } => Error::Unreachable {
                    url: realm.to_owned(),
                    detail,
                },
                other => other,
            })?;
        if !(200..300).contains(&resp.status()) {
            return Err(Error::Refused {
                url: realm.to_owned(),
                status: resp.status(),
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

/// `404 Not Found`, as reqwest says a status.
fn status_text(status: u16) -> String {
    reqwest::StatusCode::from_u16(status).map_or_else(|_| status.to_string(), |s| s.to_string())
}

pub(crate) async fn read_capped(
    mut resp: Box<dyn Answer>,
    limit: usize,
    url: &str,
    budget: &Budget,
) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|detail| Error::Unreachable {
        url: url.to_owned(),
        detail,
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

/// The `rel="next"` target of a `Link` header value (OCI referrers paging), made
/// absolute against the answer's URL `base`, if it stays on that origin.
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

/// `scheme://host:port` of an HTTP(S) URL: whom a login or token belongs to.
fn origin_of(u: &reqwest::Url) -> Option<String> {
    matches!(u.scheme(), "http" | "https").then(|| u.origin().ascii_serialization())
}
