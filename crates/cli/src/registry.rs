//! The one registry call `pullguard sign` makes: a tag's manifest, read with the
//! distribution API (`GET /v2/NAME/manifests/TAG`), anonymous, with basic credentials or
//! with a bearer token from the registry's token service, as Docker does. The caller
//! hashes the bytes; nothing the registry says about the digest is trusted.

use std::time::Duration;

use serde_json::Value;

/// What a signed manifest may be: the four kinds containerd pulls.
const ACCEPTED: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
/// Registries cap manifests at 4 MiB; a larger answer is not a manifest.
const MAX_MANIFEST: usize = 4 << 20;
const MAX_TOKEN_ANSWER: usize = 1 << 20;

/// Where and as whom to ask.
pub struct Registry<'a> {
    /// Registry host as the reference names it (`docker.io` is reached at Docker's API host).
    pub host: &'a str,
    /// Plain HTTP instead of HTTPS (`--insecure-registry`).
    pub insecure: bool,
    /// Basic credentials from the docker config, if any.
    pub credentials: Option<(String, String)>,
}

/// A manifest's bytes, and the digest the registry claimed for them (may be empty).
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub claimed_digest: String,
}

impl Registry<'_> {
    fn base(&self) -> String {
        let host = if self.host == "docker.io" {
            "registry-1.docker.io"
        } else {
            self.host
        };
        format!("{}://{host}", if self.insecure { "http" } else { "https" })
    }

    /// The manifest of `path:tag`. Errors are one line saying what failed.
    pub async fn manifest(&self, path: &str, tag: &str) -> Result<Manifest, String> {
        notary_client::use_ring_for_tls();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("pullguard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| api::error_chain(&e))?;
        let url = format!("{}/v2/{path}/manifests/{tag}", self.base());
        let get = |auth: Option<String>| {
            let mut req = client.get(&url).header("Accept", ACCEPTED.join(", "));
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            req.send()
        };
        let mut resp = get(None).await.map_err(|e| api::error_chain(&e))?;
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
            let challenge = header(&resp, "www-authenticate");
            let auth = self.answer(&client, &challenge, path).await?;
            resp = get(Some(auth)).await.map_err(|e| api::error_chain(&e))?;
        }
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("{url} answered {status}"));
        }
        let claimed_digest = header(&resp, "docker-content-digest");
        let bytes = read_capped(resp, MAX_MANIFEST, "manifest").await?;
        Ok(Manifest {
            bytes,
            claimed_digest,
        })
    }

    /// The `Authorization` value that answers a 401's challenge.
    async fn answer(
        &self,
        client: &reqwest::Client,
        challenge: &str,
        path: &str,
    ) -> Result<String, String> {
        let basic = |(user, pass): &(String, String)| {
            use base64::Engine as _;
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
            )
        };
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return self.credentials.as_ref().map(basic).ok_or_else(|| {
                "the registry wants a login and the docker config has none for it (docker login, or give --digest and --size)".to_owned()
            });
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(format!(
                "the registry wants authentication pullguard does not speak: {challenge:?}"
            ));
        }
        let params = challenge_params(params);
        let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let realm = param("realm").ok_or("the registry's bearer challenge names no realm")?;
        let scope = param("scope")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("repository:{path}:pull"));
        let mut query = vec![("scope", scope.as_str())];
        if let Some(service) = param("service") {
            query.push(("service", service));
        }
        let url = reqwest::Url::parse_with_params(realm, &query)
            .map_err(|e| format!("the registry's token realm {realm:?} is not a URL: {e}"))?;
        let mut req = client.get(url);
        if let Some(c) = &self.credentials {
            req = req.header("Authorization", basic(c));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("token service {realm}: {}", api::error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(format!(
                "token service {realm} answered {} (docker login, or give --digest and --size)",
                resp.status()
            ));
        }
        let body = read_capped(resp, MAX_TOKEN_ANSWER, "token answer").await?;
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| format!("token service {realm} sent no JSON: {e}"))?;
        let token = v["token"]
            .as_str()
            .or_else(|| v["access_token"].as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("token service {realm} sent no token"))?;
        Ok(format!("Bearer {token}"))
    }
}

/// A header's text, empty when absent or not text.
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
    what: &str,
) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| api::error_chain(&e))? {
        if bytes.len() + chunk.len() > limit {
            return Err(format!("the {what} is over {limit} bytes"));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// `realm="https://auth.example/token",service="reg",scope="repository:a:pull,push"` as
/// pairs; commas inside quotes belong to the value.
fn challenge_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.push((key, value.to_owned()));
        rest = next.trim_start_matches([',', ' ']);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::challenge_params;

    #[test]
    fn challenges_keep_commas_inside_quotes() {
        let p = challenge_params(
            r#"realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#,
        );
        assert_eq!(
            p,
            vec![
                ("realm".into(), "https://auth.docker.io/token".into()),
                ("service".into(), "registry.docker.io".into()),
                ("scope".into(), "repository:library/alpine:pull,push".into()),
            ]
        );
        let p = challenge_params("realm=https://a/t, service=x");
        assert_eq!(
            p,
            vec![
                ("realm".into(), "https://a/t".into()),
                ("service".into(), "x".into())
            ]
        );
    }
}
