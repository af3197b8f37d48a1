//! Whose login and tokens go where, through the scripted wire of loop_tests.rs: a
//! challenge answered once and its token reused, a registry's login never sent to a host
//! it redirected to, and a login of the host redirected to never sent back to the host
//! that redirected.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::loop_tests::{budget, client, digest, ok, status, BASE, HOST};

#[tokio::test]
async fn a_bearer_challenge_is_answered_once_and_the_token_reused() {
    let (c, script, _d) = client(true, None);
    let url = format!("{BASE}/manifests/v1");
    let manifest =
        r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;
    script.on(
        &url,
        status(401).with(
            "www-authenticate",
            r#"Bearer realm="https://127.0.0.1:5001/token",service="reg",scope="repository:app:pull""#,
        ),
    );
    let token_url = "https://127.0.0.1:5001/token?scope=repository%3Aapp%3Apull&service=reg";
    script.on(token_url, ok(r#"{"token":"T1","expires_in":300}"#));
    script.on(&url, ok(manifest));
    script.on(&url, ok(manifest));
    for _ in 0..2 {
        let got = c.manifest(HOST, "app", "v1", &budget()).await.unwrap();
        assert!(got.is_some());
    }
    let seen = script.seen();
    let urls: Vec<&str> = seen.iter().map(|s| s.url.as_str()).collect();
    assert_eq!(urls, [url.as_str(), token_url, url.as_str(), url.as_str()]);
    assert!(
        seen[1].pinned,
        "the token request goes to the checked addresses only"
    );
    assert!(
        seen[1]
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Basic ")),
        "the login goes to the token service of the registry that asked"
    );
    assert_eq!(seen[2].authorization.as_deref(), Some("Bearer T1"));
    assert_eq!(
        seen[3].authorization.as_deref(),
        Some("Bearer T1"),
        "reused, not fetched again"
    );
}

#[tokio::test]
async fn the_registrys_login_never_goes_to_a_host_it_redirected_to() {
    let (c, script, _d) = client(true, None);
    let url = format!("{BASE}/blobs/{}", digest());
    // Redirected to storage elsewhere, which asks for a login.
    let mut redirected = status(401).with("www-authenticate", r#"Basic realm="storage""#);
    redirected.from = Some("https://127.0.0.2:9000/blob".to_owned());
    script.on(&url, redirected);
    let err = c
        .blob(HOST, "app", &digest(), 1 << 20, &budget())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("wants a login"),
        "refused for want of credentials for the storage host: {err}"
    );
    assert!(script.seen().iter().all(|s| s.authorization.is_none()));
}

/// An attacker's registry (no login here) that redirects to one pullguardd has a login
/// for: what the attacker would get if the answer to the second one's challenge were
/// sent back to the URL first asked.
const EVIL: &str = "127.0.0.9:5000";

fn manifest() -> &'static str {
    r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#
}

#[tokio::test]
async fn a_login_of_the_host_redirected_to_never_goes_back_to_the_redirecting_host() {
    let (c, script, _d) = client(true, None);
    let evil = format!("https://{EVIL}/v2/app/manifests/v1");
    let private = format!("{BASE}/manifests/v1");
    let mut redirected = status(401).with("www-authenticate", r#"Basic realm="private""#);
    redirected.from = Some(private.clone());
    script.on(&evil, redirected);
    script.on(&private, ok(manifest()));
    let got = c.manifest(EVIL, "app", "v1", &budget()).await.unwrap();
    assert!(got.is_some(), "answered where the challenge came from");
    let seen = script.seen();
    assert!(
        seen.iter()
            .filter(|s| s.url.contains(EVIL))
            .all(|s| s.authorization.is_none()),
        "the redirecting host got a login: {seen:?}"
    );
    assert!(
        seen.iter().any(|s| s.url == private
            && s.authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("Basic "))),
        "the login went to the host that asked for it: {seen:?}"
    );
}

#[tokio::test]
async fn a_token_minted_with_the_login_of_the_host_redirected_to_never_goes_to_the_redirecting_host(
) {
    let (c, script, _d) = client(true, None);
    let evil = format!("https://{EVIL}/v2/app/manifests/v1");
    let private = format!("{BASE}/manifests/v1");
    let token_url =
        "https://127.0.0.1:5001/token?scope=repository%3Asecret%2Fapp%3Apull&service=reg";
    for _ in 0..2 {
        let mut redirected = status(401).with(
            "www-authenticate",
            r#"Bearer realm="https://127.0.0.1:5001/token",service="reg",scope="repository:secret/app:pull""#,
        );
        redirected.from = Some(private.clone());
        script.on(&evil, redirected);
        script.on(&private, ok(manifest()));
    }
    script.on(token_url, ok(r#"{"token":"T1","expires_in":300}"#));
    script.on(token_url, ok(r#"{"token":"T2","expires_in":300}"#));
    // Twice: the token kept from the first verdict must not be offered to the
    // redirecting host either.
    for _ in 0..2 {
        let got = c.manifest(EVIL, "app", "v1", &budget()).await.unwrap();
        assert!(got.is_some());
    }
    let seen = script.seen();
    assert!(
        seen.iter()
            .filter(|s| s.url.contains(EVIL))
            .all(|s| s.authorization.is_none()),
        "the redirecting host got a token: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|s| s.url == private && s.authorization.as_deref() == Some("Bearer T1")),
        "the token went to the host that asked for it: {seen:?}"
    );
}
