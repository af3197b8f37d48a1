//! Unit tests of the client: rebinding, error classes, hosts.toml caching, budgets, paging.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::transport::next_in;

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
    let wire = crate::wire::Reqwest::new(Duration::from_secs(5));
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
    let pinned = wire.pinned(&endpoint, &realm, &[addr]).unwrap();
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
