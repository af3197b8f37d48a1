//! pullguard-bench: drivers for bench/run that need more than a shell can do.
//! `load`: N concurrent gRPC clients asking `Verify` for T seconds → verdicts/s and
//! latency percentiles. `reload`: time from an atomic rename of the policy file to the
//! first verdict under the new generation. `warm`: one verdict per repository of a list
//! (fills the daemon's cache). Each prints one JSON object.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use api::pullguard_client::PullguardClient;
use api::VerifyRequest;
use clap::Parser as _;
use serde_json::json;
use tonic::transport::Channel;

#[derive(clap::Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Concurrent Verify calls for a while.
    Load {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long)]
        image: String,
        #[arg(long)]
        digest: String,
        #[arg(long)]
        clients: usize,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
    /// Rename NEW over CONFIG, then poll until the daemon answers with a newer generation.
    Reload {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        new: PathBuf,
        #[arg(long)]
        image: String,
    },
    /// One verdict per line of FILE ("IMAGE DIGEST"), 16 at a time.
    Warm {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long)]
        list: PathBuf,
    },
}

async fn connect(socket: &Path) -> PullguardClient<Channel> {
    api::connect(socket, std::time::Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| fail(&format!("cannot connect to {}: {e}", socket.display())))
}

fn fail(message: &str) -> ! {
    eprintln!("pullguard-bench: {message}");
    std::process::exit(2)
}

fn request(image: &str, digest: &str) -> VerifyRequest {
    VerifyRequest {
        image: image.to_owned(),
        digest: digest.to_owned(),
        source: "bench".to_owned(),
        ..VerifyRequest::default()
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn load(socket: &Path, image: &str, digest: &str, clients: usize, seconds: f64) {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let mut c = connect(socket).await;
        let req = request(image, digest);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut wrong = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                match c.verify(req.clone()).await {
                    Ok(r) if r.get_ref().allowed => {}
                    _ => wrong += 1,
                }
                lat.push(t.elapsed().as_micros() as u64);
            }
            (lat, wrong)
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    let mut wrong = 0;
    for t in tasks {
        let (lat, w) = t.await.unwrap_or_default();
        all.extend(lat);
        wrong += w;
    }
    let elapsed = started.elapsed().as_secs_f64().max(seconds.min(0.001));
    all.sort_unstable();
    println!(
        "{}",
        json!({"clients": clients, "verdicts": all.len(), "per_second": all.len() as f64 / elapsed,
               "p50_us": percentile(&all, 0.50), "p99_us": percentile(&all, 0.99), "not_allowed": wrong})
    );
}

async fn reload(socket: &Path, config: &Path, new: &Path, image: &str) {
    let mut c = connect(socket).await;
    let before = c
        .verify(request(image, ""))
        .await
        .unwrap_or_else(|e| fail(&e.to_string()))
        .into_inner()
        .policy_generation;
    let t = Instant::now();
    std::fs::rename(new, config).unwrap_or_else(|e| fail(&format!("rename: {e}")));
    loop {
        let g = c
            .verify(request(image, ""))
            .await
            .unwrap_or_else(|e| fail(&e.to_string()))
            .into_inner()
            .policy_generation;
        if g > before {
            break;
        }
        if t.elapsed() > Duration::from_secs(30) {
            fail("the new policy was not loaded within 30 s");
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    println!(
        "{}",
        json!({"reload_ms": t.elapsed().as_secs_f64() * 1000.0})
    );
}

async fn warm(socket: &Path, list: &Path) {
    let text = std::fs::read_to_string(list).unwrap_or_else(|e| fail(&e.to_string()));
    let items: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
    let c = connect(socket).await;
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = Vec::new();
    for (image, digest) in items {
        let mut c = c.clone();
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await;
            c.verify(request(&image, &digest))
                .await
                .map(|r| r.into_inner().allowed)
                .unwrap_or(false)
        }));
    }
    let mut allowed = 0;
    let n = tasks.len();
    for t in tasks {
        if t.await.unwrap_or(false) {
            allowed += 1;
        }
    }
    println!("{}", json!({"repositories": n, "allowed": allowed}));
}

#[tokio::main]
async fn main() {
    match Cli::parse().command {
        Command::Load {
            socket,
            image,
            digest,
            clients,
            seconds,
        } => load(&socket, &image, &digest, clients, seconds).await,
        Command::Reload {
            socket,
            config,
            new,
            image,
        } => reload(&socket, &config, &new, &image).await,
        Command::Warm { socket, list } => warm(&socket, &list).await,
    }
}
