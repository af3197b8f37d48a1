//! The client's loops through a scripted wire (wire.rs): referrer paging and its caps,
//! the tag-schema fallback, mirrors and which failure is reported, size limits and
//! budgets (whose login goes where: login_tests.rs). A hand-written wire, beside the tests of the same paths against real registries (crates/daemon/tests:
//! cosign.rs, registry_attacks.rs, with olareg and docker-registry).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::*;
use crate::wire::{Answer, Fut, Get, Wire};

/// One scripted answer.
#[derive(Clone)]
pub(super) struct Canned {
    pub(super) status: u16,
    pub(super) headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// Send a Content-Length (else the body only streams).
    length: bool,
    /// The URL that answers, when a redirect moved the request.
    pub(super) from: Option<String>,
}

pub(super) fn ok(body: &str) -> Canned {
    Canned {
        status: 200,
        headers: Vec::new(),
        body: body.as_bytes().to_vec(),
        length: true,
        from: None,
    }
}

pub(super) fn status(code: u16) -> Canned {
    Canned {
        status: code,
        ..ok("")
    }
}

impl Canned {
    pub(super) fn with(mut self, name: &'static str, value: &str) -> Canned {
        self.headers.push((name, value.to_owned()));
        self
    }
}

/// What the client sent.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    pub(super) url: String,
    pub(super) authorization: Option<String>,
    pub(super) pinned: bool,
}

#[derive(Default)]
pub(super) struct Script {
    answers: Mutex<HashMap<String, VecDeque<Canned>>>,
    seen: Mutex<Vec<Seen>>,
}

impl Script {
    pub(super) fn on(&self, url: &str, answer: Canned) {
        self.answers
            .lock()
            .unwrap()
            .entry(url.to_owned())
            .or_default()
            .push_back(answer);
    }

    pub(super) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

struct Scripted(Arc<Script>);

impl Wire for Scripted {
    fn get<'a>(&'a self, req: Get<'a>) -> Fut<'a, Result<Box<dyn Answer>, Error>> {
        Box::pin(async move {
            self.0.seen.lock().unwrap().push(Seen {
                url: req.url.to_owned(),
                authorization: req.authorization.clone(),
                pinned: req.pinned.is_some(),
            });
            let canned = self
                .0
                .answers
                .lock()
                .unwrap()
                .get_mut(req.url)
                .and_then(VecDeque::pop_front)
                .ok_or_else(|| Error::Unreachable {
                    url: req.url.to_owned(),
                    detail: "connection refused (scripted)".to_owned(),
                })?;
            let url = reqwest::Url::parse(canned.from.as_deref().unwrap_or(req.url)).unwrap();
            let chunks = canned.body.chunks(1000).map(<[u8]>::to_vec).collect();
            Ok(Box::new(CannedAnswer {
                canned,
                url,
                chunks,
            }) as Box<dyn Answer>)
        })
    }
}

struct CannedAnswer {
    canned: Canned,
    url: reqwest::Url,
    chunks: VecDeque<Vec<u8>>,
}

impl Answer for CannedAnswer {
    fn status(&self) -> u16 {
        self.canned.status
    }

    fn url(&self) -> &reqwest::Url {
        &self.url
    }

    fn header(&self, name: &str) -> String {
        self.canned
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    fn content_length(&self) -> Option<u64> {
        self.canned.length.then_some(self.canned.body.len() as u64)
    }

    fn chunk(&mut self) -> Fut<'_, Result<Option<Vec<u8>>, String>> {
        Box::pin(async move { Ok(self.chunks.pop_front()) })
    }
}

pub(super) const HOST: &str = "127.0.0.1:5000";
pub(super) const BASE: &str = "https://127.0.0.1:5000/v2/app";
const SIG: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

/// The first referrers request: one artifact type asked for is a filter in the query.
fn first() -> String {
    format!("{BASE}/referrers/{}?artifactType={SIG}", digest())
}

pub(super) fn digest() -> String {
    format!("sha256:{}", "ab".repeat(32))
}

/// A client on a script, with credentials for `HOST` when `login`, and `hosts_toml`
/// for `HOST` when given.
pub(super) fn client(
    login: bool,
    hosts_toml: Option<&str>,
) -> (Client, Arc<Script>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("config.json");
    std::fs::write(
        &auth,
        if login {
            format!(r#"{{"auths":{{"{HOST}":{{"username":"u","password":"secret"}}}}}}"#)
        } else {
            "{}".to_owned()
        },
    )
    .unwrap();
    if let Some(text) = hosts_toml {
        std::fs::create_dir_all(dir.path().join("hosts").join(HOST)).unwrap();
        std::fs::write(dir.path().join("hosts").join(HOST).join("hosts.toml"), text).unwrap();
    }
    let (mut c, _) = Client::new(
        Some(&dir.path().join("hosts")),
        Some(&auth),
        Duration::from_secs(5),
    )
    .unwrap();
    let script = Arc::new(Script::default());
    c.wire = Box::new(Scripted(script.clone()));
    (c, script, dir)
}

pub(super) fn budget() -> Budget {
    Budget::new(100, 64 << 20, Duration::from_secs(60))
}

/// An OCI index of `n` entries of `artifact_type`, digests numbered from `from`.
fn index(artifact_type: &str, from: usize, n: usize) -> String {
    let entries: Vec<String> = (from..from + n)
        .map(|i| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{i:064x}","size":1,"artifactType":"{artifact_type}"}}"#
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
        entries.join(",")
    )
}

#[tokio::test]
async fn referrers_follow_every_page_in_order() {
    let (c, script, _d) = client(false, None);
    script.on(
        &first(),
        ok(&index(SIG, 0, 2)).with("link", "</v2/app/referrers/p2>; rel=\"next\""),
    );
    script.on(
        &format!("{BASE}/referrers/p2"),
        ok(&index(SIG, 2, 2)).with(
            "link",
            "<https://127.0.0.1:5000/v2/app/referrers/p3>; rel=\"next\"",
        ),
    );
    script.on(&format!("{BASE}/referrers/p3"), ok(&index(SIG, 4, 1)));
    let found = c
        .referrers(HOST, "app", &digest(), &[SIG], &budget())
        .await
        .unwrap();
    let numbers: Vec<String> = found.matching.iter().map(|d| d.digest.clone()).collect();
    let want: Vec<String> = (0..5).map(|i| format!("sha256:{i:064x}")).collect();
    assert_eq!(numbers, want);
    assert!(!found.unread);
    assert_eq!(pages_asked(&script), 3);
}

/// Referrer pages asked (the tag-schema fallback is asked beside the first).
fn pages_asked(script: &Script) -> usize {
    script
        .seen()
        .iter()
        .filter(|s| s.url.contains("/referrers/"))
        .count()
}

#[tokio::test]
async fn endless_pages_stop_at_the_cap_and_say_more_is_unread() {
    let (c, script, _d) = client(false, None);
    script.on(
        &first(),
        ok(&index(SIG, 0, 1)).with("link", "</v2/app/referrers/p1>; rel=\"next\""),
    );
    for p in 1..50 {
        script.on(
            &format!("{BASE}/referrers/p{p}"),
            ok(&index(SIG, p, 1)).with(
                "link",
                &format!("</v2/app/referrers/p{}>; rel=\"next\"", p + 1),
            ),
        );
    }
    let found = c
        .referrers(HOST, "app", &digest(), &[SIG], &budget())
        .await
        .unwrap();
    assert_eq!(pages_asked(&script), MAX_PAGES);
    assert_eq!(found.matching.len(), MAX_PAGES);
    assert!(found.unread, "a signature may be on the pages not read");
}

#[tokio::test]
async fn signatures_are_found_under_a_pile_of_other_artifacts_and_broken_entries() {
    let (c, script, _d) = client(false, None);
    let entries = |text: String| -> Vec<serde_json::Value> {
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["manifests"]
            .as_array()
            .unwrap()
            .clone()
    };
    let mut manifests = entries(index("application/spdx+json", 100, 3000));
    // Entries that are not descriptors, then two signatures at the very end.
    manifests.push(serde_json::json!({"digest": 5}));
    manifests.push(serde_json::json!("garbage"));
    manifests.extend(entries(index(SIG, 0, 2)));
    let junk = serde_json::json!({"schemaVersion": 2, "manifests": manifests}).to_string();
    script.on(&first(), ok(&junk));
    let found = c
        .referrers(HOST, "app", &digest(), &[SIG], &budget())
        .await
        .unwrap();
    assert_eq!(found.matching.len(), 2, "{found:?}");
    assert_eq!(found.other, 3000);
    assert_eq!(found.broken, 2);
}

#[tokio::test]
async fn a_registry_without_the_referrers_api_is_asked_for_the_fallback_tag() {
    let (c, script, _d) = client(false, None);
    script.on(&first(), status(404));
    let tag = digest().replacen(':', "-", 1);
    script.on(&format!("{BASE}/manifests/{tag}"), ok(&index(SIG, 7, 1)));
    let found = c
        .referrers(HOST, "app", &digest(), &[SIG], &budget())
        .await
        .unwrap();
    assert_eq!(found.matching[0].digest, format!("sha256:{:064x}", 7));
}

#[tokio::test]
async fn the_referrers_api_answer_counts_over_the_fallback_tag_asked_beside_it() {
    let (c, script, _d) = client(false, None);
    script.on(&first(), ok(&index(SIG, 1, 1)));
    let tag = digest().replacen(':', "-", 1);
    // Asked at the same time; a registry with the API may hold anything under that tag,
    // or fail on it: neither counts.
    for answer in [ok(&index(SIG, 7, 1)), status(500)] {
        script.on(&format!("{BASE}/manifests/{tag}"), answer);
        let found = c
            .referrers(HOST, "app", &digest(), &[SIG], &budget())
            .await
            .unwrap();
        let digests: Vec<&str> = found.matching.iter().map(|d| d.digest.as_str()).collect();
        assert_eq!(digests, [format!("sha256:{:064x}", 1)]);
        script.on(&first(), ok(&index(SIG, 1, 1)));
    }
    assert!(script.seen().iter().any(|s| s.url.ends_with(&tag)));
}

#[tokio::test]
async fn challenges_pullguard_cannot_answer_are_refusals_that_say_why() {
    let (c, script, _d) = client(false, None);
    let url = format!("{BASE}/manifests/v1");
    script.on(
        &url,
        status(401).with("www-authenticate", r#"Basic realm="r""#),
    );
    let err = c.manifest(HOST, "app", "v1", &budget()).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("put credentials for it into registry_auth_file"),
        "{err}"
    );
    script.on(&url, status(401).with("www-authenticate", "Negotiate abc"));
    let err = c.manifest(HOST, "app", "v1", &budget()).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("authentication pullguardd does not speak"),
        "{err}"
    );
    script.on(
        &url,
        status(401).with("www-authenticate", r#"Bearer service="x""#),
    );
    let err = c.manifest(HOST, "app", "v1", &budget()).await.unwrap_err();
    assert!(err.to_string().contains("names no realm"), "{err}");
    // A realm on a link-local address (a metadata service) for a registry that is not.
    script.on(
        &url,
        status(401).with(
            "www-authenticate",
            r#"Bearer realm="https://169.254.169.254/token""#,
        ),
    );
    let err = c.manifest(HOST, "app", "v1", &budget()).await.unwrap_err();
    assert!(matches!(err, Error::UnsafeRealm { .. }), "{err}");
    assert!(!script.seen().iter().any(|s| s.url.contains("169.254")));
}

#[tokio::test]
async fn sizes_are_capped_whether_declared_or_streamed_and_budgets_end_the_work() {
    let (c, script, _d) = client(false, None);
    let url = format!("{BASE}/blobs/{}", digest());
    script.on(&url, ok(&"x".repeat(5000)));
    let err = c
        .blob(HOST, "app", &digest(), 4096, &budget())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Oversized { .. }), "{err}");
    let mut streamed = ok(&"x".repeat(5000));
    streamed.length = false;
    script.on(&url, streamed);
    let err = c
        .blob(HOST, "app", &digest(), 4096, &budget())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Oversized { .. }), "{err}");
    // Two requests allowed: the third is not sent.
    let small = Budget::new(2, 1 << 20, Duration::from_secs(60));
    for _ in 0..3 {
        script.on(&url, status(404));
    }
    let mut results = Vec::new();
    for _ in 0..3 {
        results.push(c.blob(HOST, "app", &digest(), 4096, &small).await);
    }
    assert!(
        matches!(results[2], Err(Error::Budget { .. })),
        "{:?}",
        results[2]
    );
    assert_eq!(script.seen().len(), 4);
}

#[tokio::test]
async fn content_by_digest_must_hash_to_it_whoever_serves_it() {
    let (c, script, _d) = client(false, None);
    let url = format!("{BASE}/blobs/{}", digest());
    script.on(&url, ok("not what was asked for"));
    let err = c
        .blob(HOST, "app", &digest(), 4096, &budget())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("a blob hashing to"), "{err}");
}

#[tokio::test]
async fn a_failing_mirror_passes_on_and_a_refusal_outranks_a_later_outage() {
    let mirror = "[host.\"https://127.0.0.1:6000\"]\ncapabilities = [\"pull\", \"resolve\"]\n";
    let (c, script, _d) = client(
        false,
        Some(&format!("server = \"https://{HOST}\"\n{mirror}")),
    );
    let body = "content";
    let d = format!("sha256:{}", hex::encode(Sha256::digest(body.as_bytes())));
    let on_mirror = format!("https://127.0.0.1:6000/v2/app/blobs/{d}");
    let on_server = format!("{BASE}/blobs/{d}");
    script.on(&on_mirror, status(503));
    script.on(&on_server, ok(body));
    assert_eq!(
        c.blob(HOST, "app", &d, 4096, &budget()).await.unwrap(),
        body.as_bytes()
    );
    // The mirror refuses (403); the server is down: the refusal is what is reported.
    script.on(&on_mirror, status(403));
    let err = c.blob(HOST, "app", &d, 4096, &budget()).await.unwrap_err();
    assert!(
        matches!(err, Error::Refused { status: 403, .. }),
        "an outage must not hide an answer: {err}"
    );
    // 5xx and 429 are outages (transient), not refusals.
    script.on(&on_mirror, status(429));
    script.on(&on_server, status(500));
    let err = c.blob(HOST, "app", &d, 4096, &budget()).await.unwrap_err();
    assert!(err.is_unreachable(), "{err}");
}

#[tokio::test]
async fn a_verdicts_budget_holds_the_most_signatures_it_reads_behind_a_token_service() {
    // The most a cosign verdict reads: its classic tag, the referrers API and its
    // fallback tag (the three asked together, so each meets the challenge and fetches
    // a token), every page the client follows, and each signature's manifest and blob.
    let (c, script, _d) = client(true, None);
    let challenge = || {
        status(401).with(
            "www-authenticate",
            r#"Bearer realm="https://127.0.0.1:5001/token",service="reg",scope="repository:app:pull""#,
        )
    };
    let token_url = "https://127.0.0.1:5001/token?scope=repository%3Aapp%3Apull&service=reg";
    for _ in 0..3 {
        script.on(token_url, ok(r#"{"token":"T1","expires_in":300}"#));
    }
    let sha = |s: &str| format!("sha256:{}", hex::encode(Sha256::digest(s.as_bytes())));
    let mut signatures = Vec::new();
    for i in 0..MAX_REFERRERS {
        let blob = format!("signature {i}");
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[{{"mediaType":"application/octet-stream","digest":"{}","size":{}}}]}}"#,
            sha(&blob),
            blob.len()
        );
        script.on(
            &format!("{BASE}/manifests/{}", sha(&manifest)),
            ok(&manifest),
        );
        script.on(&format!("{BASE}/blobs/{}", sha(&blob)), ok(&blob));
        signatures.push((sha(&manifest), sha(&blob)));
    }
    let per_page = MAX_REFERRERS / MAX_PAGES;
    for page in 0..MAX_PAGES {
        let entries: Vec<String> = signatures[page * per_page..(page + 1) * per_page]
            .iter()
            .map(|(m, _)| {
                format!(
                    r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{m}","size":1,"artifactType":"{SIG}"}}"#
                )
            })
            .collect();
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
            entries.join(",")
        );
        let url = if page == 0 {
            script.on(&first(), challenge());
            first()
        } else {
            format!("{BASE}/referrers/p{page}")
        };
        let answer = ok(&body);
        script.on(
            &url,
            if page + 1 < MAX_PAGES {
                answer.with(
                    "link",
                    &format!("</v2/app/referrers/p{}>; rel=\"next\"", page + 1),
                )
            } else {
                answer
            },
        );
    }
    let fallback = format!("{BASE}/manifests/{}", digest().replacen(':', "-", 1));
    let classic = format!("{}.sig", digest().replacen(':', "-", 1));
    for url in [fallback, format!("{BASE}/manifests/{classic}")] {
        script.on(&url, challenge());
        script.on(&url, status(404));
    }
    let budget = Budget::per_verdict();
    let image = digest();
    let (classic, found) = tokio::join!(
        c.manifest(HOST, "app", &classic, &budget),
        c.referrers(HOST, "app", &image, &[SIG], &budget),
    );
    assert!(classic.unwrap().is_none());
    let found = found.unwrap();
    assert_eq!(found.matching.len(), MAX_REFERRERS);
    for (manifest, blob) in &signatures {
        c.manifest(HOST, "app", manifest, &budget)
            .await
            .unwrap()
            .expect("the signature's manifest");
        c.blob(HOST, "app", blob, 4096, &budget)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let asked = script.seen().len();
    assert!(asked > 2 * MAX_REFERRERS + MAX_PAGES, "{asked} requests");
}

/// Warming a host opens its connections with `/v2/` on the endpoint a verdict asks
/// first (a mirror here), three at once, with no credentials: a 401 there is not
/// answered with the login the node holds for the registry.
#[tokio::test]
async fn warming_asks_the_first_endpoint_three_times_without_credentials() {
    let mirror = "[host.\"https://127.0.0.1:6000\"]\ncapabilities = [\"pull\", \"resolve\"]\n";
    let (c, script, _d) = client(
        true,
        Some(&format!("server = \"https://{HOST}\"\n{mirror}")),
    );
    let v2 = "https://127.0.0.1:6000/v2/";
    for _ in 0..3 {
        script.on(
            v2,
            status(401).with("www-authenticate", "Basic realm=\"r\""),
        );
    }
    c.warm(HOST).await;
    let seen = script.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(
        seen.iter()
            .all(|s| s.url == v2 && s.authorization.is_none() && !s.pinned),
        "{seen:?}"
    );
}
