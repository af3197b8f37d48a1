//! What a hostile trust server can make a fetch hold before anything is verified. A
//! hand-written server (plain HTTP on 127.0.0.1) stands in for it: a real notary-server
//! does not serve such files; the daemon's tests fetch from a real one.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::time::Duration;

use notary_client::{FetchError, Fetcher, MAX_FETCH_BYTES};

/// Serves root.json and timestamp.json as `{}`, every other file as `size` bytes of
/// junk, one connection per thread.
fn junk_server(size: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let body = vec![b' '; size];
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let small = line.contains("/root.json") || line.contains("/timestamp.json");
                    // The headers, up to the blank line.
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let body: &[u8] = if small { b"{}" } else { &body };
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                    if stream.write_all(head.as_bytes()).is_err() || stream.write_all(body).is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// Snapshot, targets and targets/releases of 60 MiB each: each under the file limit
/// (100 MiB), together over what one fetch reads. Before the bound, all three were held
/// (and up to a thousand delegations more) before any was verified.
#[tokio::test(flavor = "multi_thread")]
async fn a_fetch_holds_no_more_than_its_budget_of_unverified_bytes() {
    let url = junk_server(60 * 1024 * 1024);
    let f = Fetcher::new("hostile", &url, None, Duration::from_secs(20)).unwrap();
    match f.fetch("registry.test/app", None).await {
        Err(FetchError::TooMuch { limit, .. }) => assert_eq!(limit, MAX_FETCH_BYTES),
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("every file was read"),
    }
}
