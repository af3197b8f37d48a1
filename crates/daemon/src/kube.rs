//! A small Kubernetes API client for code that runs in a pod: the pod's service account
//! (token re-read for each request: the kubelet rotates it), the cluster's CA alone, JSON
//! in and out, bounded answers. Used by the Events sink ([`crate::kube_events`]) and by
//! `pullguard node remove-verifier-on-nodes` (the chart's uninstall hook).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// The standard service-account mount in a pod.
pub const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// An answer larger than this is refused (lists here are of a namespace's few pods).
const MAX_ANSWER: usize = 8 << 20;

/// The API server and our credentials for it.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token_file: PathBuf,
}

impl Client {
    /// The in-cluster client (`api`: the server's URL, else `KUBERNETES_SERVICE_HOST`),
    /// with the credentials in `dir`; or why there is none.
    pub fn new(api: Option<&str>, dir: &Path) -> Result<Client, String> {
        let base = match api {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
                    "KUBERNETES_SERVICE_HOST is not set (not in a pod?); set kubernetes_api"
                        .to_owned()
                })?;
                let port =
                    std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".to_owned());
                if host.contains(':') {
                    format!("https://[{host}]:{port}")
                } else {
                    format!("https://{host}:{port}")
                }
            }
        };
        let ca_file = dir.join("ca.crt");
        let ca = std::fs::read(&ca_file)
            .map_err(|e| format!("cannot read the cluster CA {}: {e}", ca_file.display()))?;
        let ca = reqwest::Certificate::from_pem(&ca)
            .map_err(|e| format!("{} is not a PEM certificate: {e}", ca_file.display()))?;
        let token_file = dir.join("token");
        if !token_file.is_file() {
            return Err(format!(
                "no service account token at {} (automountServiceAccountToken?)",
                token_file.display()
            ));
        }
        // rustls with ring, as everywhere in pullguard (an error: installed already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        // The cluster's CA alone: a public CA's certificate for the API's name is no
        // proof of the API server.
        let http = reqwest::Client::builder()
            .tls_certs_only([ca])
            .tls_version_min(reqwest::tls::Version::TLS_1_2)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the API client: {e}"))?;
        Ok(Client {
            http,
            base,
            token_file,
        })
    }

    /// The API server's URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// GET `path` (under the server's URL): its JSON.
    pub async fn get(&self, path: &str) -> Result<Value, String> {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// POST `body` to `path`: the object the server made.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    /// DELETE `path` (`propagationPolicy=Background` is the caller's to add).
    pub async fn delete(&self, path: &str) -> Result<Value, String> {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let token = std::fs::read_to_string(&self.token_file)
            .map_err(|e| format!("cannot read {}: {e}", self.token_file.display()))?;
        let mut request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(token.trim());
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| format!("{method} {url}: {}", api::error_chain(&e)))?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("{method} {url}: {}", api::error_chain(&e)))?
        {
            if bytes.len() + chunk.len() > MAX_ANSWER {
                return Err(format!(
                    "{method} {url}: the answer is larger than {} MiB",
                    MAX_ANSWER >> 20
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(format!(
                "{method} {url}: {status}: {}",
                api::codes::text::capped(&String::from_utf8_lossy(&bytes), 300)
            ));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| format!("{method} {url}: the answer is not JSON: {e}"))
    }
}
