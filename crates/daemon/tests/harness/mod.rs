//! Real components for the daemon's tests: a notary-server signed with the real notary
//! CLI (tests/notary/serve.sh), the real pullguardd binary, a gRPC client on its socket.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use daemon::api::pullguard_client::PullguardClient;
use daemon::api::{VerifyRequest, VerifyResponse};
use tonic::transport::Channel;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A notary-signer + notary-server with `registry.test/pullguard/app` signed: `v1` in
/// targets, `v2` in targets/releases.
pub struct Notary {
    pub dir: tempfile::TempDir,
    pub env: HashMap<String, String>,
}

impl Notary {
    pub fn start() -> Notary {
        let (dir, env) = serve(
            "tests/notary/serve.sh",
            "tests/notary/serve.sh failed: is the Debian package notary installed?",
        );
        Notary { dir, env }
    }

    pub fn get(&self, k: &str) -> &str {
        &self.env[k]
    }

    /// Stops the notary-server (the signer keeps running).
    pub fn stop_server(&self) {
        kill(self.get("NOTARY_SERVER_PID"));
        std::thread::sleep(Duration::from_millis(200));
    }

    /// Runs the notary CLI against this server.
    pub fn cli(&self, args: &str) {
        notary_cli(&self.dir.path().display().to_string(), args);
    }
}

/// The notary CLI (tests/notary/lib.sh) with the client state in `notary_dir`.
fn notary_cli(notary_dir: &str, args: &str) {
    let script = format!(
        ". {}/tests/notary/lib.sh; NOTARY_DIR={notary_dir} ; notary_cli {args} >/dev/null",
        repo_root().display(),
    );
    let st = Command::new("bash").arg("-c").arg(script).status().unwrap();
    assert!(st.success(), "notary {args}");
}

/// Runs `cmd`; (success, stdout then stderr).
fn combined(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Waits (20 s at most) for the `n`-th event of `kind` (1-based) and returns it.
pub async fn nth_event(world: &World, kind: &str, n: usize) -> serde_json::Value {
    eventually(20, || async move {
        world.events_of(kind).into_iter().nth(n - 1)
    })
    .await
    .unwrap_or_else(|| panic!("no {kind} event #{n}; events: {:#?}", world.events()))
}

/// Waits (20 s at most) until containerd no longer has `image` in `namespace`.
pub async fn until_gone(cd: &Containerd, namespace: &str, image: &str) {
    let gone = eventually(20, || async move {
        (!cd.images(namespace).iter().any(|i| i == image)).then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "{image} is still in containerd namespace {namespace}"
    );
}

/// The servers a serve script started: its environment, and every `*_PID` it lists,
/// stopped on drop.
pub struct Served {
    pub dir: tempfile::TempDir,
    pub env: HashMap<String, String>,
}

impl Served {
    pub fn start(script: &str, hint: &str) -> Served {
        let (dir, env) = serve(script, hint);
        Served { dir, env }
    }

    pub fn get(&self, k: &str) -> &str {
        &self.env[k]
    }

    /// `REPO:name` and its digest (`DIGEST_NAME`).
    pub fn image(&self, name: &str) -> (String, String) {
        (
            format!("{}:{name}", self.get("REPO")),
            self.get(&format!("DIGEST_{}", name.to_ascii_uppercase()))
                .to_owned(),
        )
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        for (k, pid) in &self.env {
            if k.ends_with("_PID") {
                kill(pid);
            }
        }
    }
}

/// tests/cosign/serve.sh: notary-signer + notary-server and a docker-registry with images
/// signed by the real cosign (both layouts, two keys, no transparency log) and the real
/// notary CLI; see the script for each tag.
pub struct CosignWorld(Served);

impl std::ops::Deref for CosignWorld {
    type Target = Served;
    fn deref(&self) -> &Served {
        &self.0
    }
}

impl CosignWorld {
    pub fn start() -> CosignWorld {
        CosignWorld(Served::start(
            "tests/cosign/serve.sh",
            "tests/cosign/serve.sh failed: run scripts/test (it builds cosign into ~/.cache/pullguard-tools); are notary and docker-registry installed?",
        ))
    }

    /// A hosts.toml directory that reaches the plain-HTTP registries, as containerd's.
    pub fn certs_d(&self) -> PathBuf {
        let d = self.dir.path().join("certs.d");
        for reg in [
            self.get("REGISTRY"),
            self.get("AUTH_REGISTRY"),
            self.get("OLAREG"),
        ] {
            std::fs::create_dir_all(d.join(reg)).unwrap();
            std::fs::write(
                d.join(reg).join("hosts.toml"),
                format!("server = \"http://{reg}\"\n[host.\"http://{reg}\"]\ncapabilities = [\"pull\", \"resolve\"]\n"),
            )
            .unwrap();
        }
        d
    }

    /// Does the real `cosign verify --key KEY` accept `REPO@digest`?
    pub fn cosign_verify(&self, key: &str, digest: &str) -> bool {
        Command::new(self.get("COSIGN"))
            .args([
                "verify",
                "--key",
                key,
                "--insecure-ignore-tlog",
                "--allow-http-registry",
            ])
            .arg("--use-signed-timestamps=false")
            .arg(format!("{}@{digest}", self.get("REPO")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    pub fn stop_registry(&self) {
        kill(self.get("REGISTRY_PID"));
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// tests/notation/serve.sh: notary-signer + notary-server and a docker-registry with
/// images signed by the Notary Project's notation-go (JWS, COSE, untrusted CA, another
/// identity, expired, a swapped signature), Notary v1 and cosign; see the script.
pub struct NotationWorld(Served);

impl std::ops::Deref for NotationWorld {
    type Target = Served;
    fn deref(&self) -> &Served {
        &self.0
    }
}

impl NotationWorld {
    pub fn start() -> NotationWorld {
        NotationWorld(Served::start(
            "tests/notation/serve.sh",
            "tests/notation/serve.sh failed: run scripts/test (it builds the notation peer and cosign into ~/.cache/pullguard-tools); are notary and docker-registry installed?",
        ))
    }

    /// Copies Notation's trust store into `keys/notation/truststore`, as an operator
    /// would, and returns a hosts.toml directory for the plain-HTTP registry.
    pub fn install(&self, keys: &Path) -> PathBuf {
        let to = keys.join("notation");
        std::fs::create_dir_all(&to).unwrap();
        let st = Command::new("cp")
            .arg("-r")
            .arg(Path::new(self.get("NOTATION_CONFIG")).join("truststore"))
            .arg(&to)
            .status()
            .unwrap();
        assert!(st.success());
        let reg = self.get("REGISTRY");
        let d = self.dir.path().join("certs.d");
        std::fs::create_dir_all(d.join(reg)).unwrap();
        std::fs::write(
            d.join(reg).join("hosts.toml"),
            format!("server = \"http://{reg}\"\n"),
        )
        .unwrap();
        d
    }

    /// `STAMPED_REPO:name` (the repository whose trust policy names a tsa store) and its digest.
    pub fn stamped(&self, name: &str) -> (String, String) {
        let (_, digest) = self.image(name);
        (format!("{}:{name}", self.get("STAMPED_REPO")), digest)
    }

    /// Does notation-go's verifier (Notation's trust policy and store of this world) accept
    /// `IMAGE` (a tagged reference) at `digest`?
    pub fn notation_verify(&self, image: &str, digest: &str) -> bool {
        let repo = image.rsplit_once(':').map_or(image, |(r, _)| r);
        Command::new(self.get("NOTATION_PEER"))
            .args(["verify", "--config", self.get("NOTATION_CONFIG")])
            .arg(format!("{repo}@{digest}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }
}

/// The pinned cosign (scripts/lib-tools.sh builds it into the tools cache).
pub fn cosign_bin() -> PathBuf {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            ". {}/scripts/lib-tools.sh; go_tools_env; printf %s \"$COSIGN\"",
            repo_root().display()
        ))
        .output()
        .unwrap();
    let p = PathBuf::from(String::from_utf8(out.stdout).unwrap());
    assert!(
        p.is_file(),
        "{} is missing: run scripts/test (it builds cosign)",
        p.display()
    );
    p
}

/// `cosign sign --key DIR/cosign.key IMAGE` with a new key pair in `dir`, no transparency
/// log, plain HTTP; returns the public key file.
pub fn cosign_sign(dir: &Path, image: &str) -> PathBuf {
    let cosign = cosign_bin();
    if !dir.join("cosign.pub").exists() {
        let st = Command::new(&cosign)
            .arg("generate-key-pair")
            .current_dir(dir)
            .env("COSIGN_PASSWORD", "pullguard-test")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "cosign generate-key-pair");
    }
    let (ok, out) = combined(
        Command::new(&cosign)
            .args(["sign", "--key"])
            .arg(dir.join("cosign.key"))
            .args([
                "--tlog-upload=false",
                "--use-signing-config=false",
                "--allow-http-registry",
                "-y",
                image,
            ])
            .env("COSIGN_PASSWORD", "pullguard-test"),
    );
    assert!(ok, "cosign sign {image}: {out}");
    dir.join("cosign.pub")
}

/// A script of tests/faults (a misbehaving trust server, a proxy), started with `args`
/// and returned once it says "ready"; stopped on drop.
pub struct Fault(Child);

impl Fault {
    pub fn start(script: &str, args: &[&str]) -> Fault {
        let mut child = Command::new("python3")
            .arg(repo_root().join("tests/faults").join(script))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut ready,
        )
        .unwrap();
        assert_eq!(ready.trim(), "ready", "tests/faults/{script} did not start");
        Fault(child)
    }
}

impl Drop for Fault {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn kill(pid: &str) {
    let _ = Command::new("kill").arg(pid).stderr(Stdio::null()).status();
}

impl Drop for Notary {
    fn drop(&mut self) {
        kill(self.get("NOTARY_SERVER_PID"));
        kill(self.get("NOTARY_SIGNER_PID"));
    }
}

/// tests/containerd/serve.sh: notary-signer + notary-server, a docker-registry and a
/// containerd 1.6 on a private socket, with REPO:signed (signed by the real notary CLI),
/// REPO:unsigned and REPO:later in the registry.
pub struct Containerd {
    pub dir: tempfile::TempDir,
    pub env: HashMap<String, String>,
}

impl Containerd {
    /// Debian's containerd 1.6 (no verifier hook, no NRI).
    pub fn start() -> Containerd {
        let (dir, env) = serve_with(
            "tests/containerd/serve.sh",
            "tests/containerd/serve.sh failed: are the Debian packages containerd, docker-registry, skopeo and notary installed, and is this root?",
            &[],
        );
        Containerd { dir, env }
    }

    /// The pinned containerd 2.x (scripts/lib-tools.sh) with CRI, NRI and the image
    /// verifier as the .deb ships it, its verifier asking the pullguardd of `world`.
    /// `cri_images`: extra lines for CRI's image section (`use_local_image_pull = true`).
    pub fn start_v2(world: &World, cri_images: &str) -> Containerd {
        let verifier = bin("pullguard-verifier");
        let (dir, env) = serve_with(
            "tests/containerd/serve.sh",
            "tests/containerd/serve.sh failed for containerd 2.x: run scripts/test (it builds containerd 2.x, ctr and crictl into ~/.cache/pullguard-tools), and are runc, docker-registry, skopeo and notary installed?",
            &[
                ("CONTAINERD_FLAVOR", "2"),
                ("PULLGUARD_SOCKET", world.socket.to_str().unwrap()),
                ("VERIFIER", verifier.to_str().unwrap()),
                ("CONTAINERD2_CRI_IMAGES", cri_images),
            ],
        );
        Containerd { dir, env }
    }

    pub fn get(&self, k: &str) -> &str {
        &self.env[k]
    }

    pub fn socket(&self) -> &str {
        self.get("CONTAINERD_SOCKET")
    }

    /// A policy for `world` with the watcher on this containerd and one rule, `demo`,
    /// over the test registry's `demo/` repositories under `mode`.
    pub fn demo_policy(&self, world: &World, mode: &str) -> String {
        format!(
            "{}{}[[rule]]\nname = \"demo\"\nmatch = \"127.0.0.1:*/demo/**\"\nmode = \"{mode}\"\n",
            world.daemon_section(&format!("containerd_socket = \"{}\"", self.socket())),
            self.server_section()
        )
    }

    /// `[trust_server.notary]` and defaults for this world's notary.
    pub fn server_section(&self) -> String {
        format!(
            "[trust_server.notary]\nurl = \"{}\"\nca_file = \"{}\"\ntimeout = \"2s\"\n\n[defaults]\ntrust_server = \"notary\"\ntofu = true\n",
            self.get("NOTARY_URL"),
            self.get("NOTARY_CA")
        )
    }

    /// Runs `ctr` against this containerd; returns (success, stdout + stderr).
    pub fn ctr(&self, namespace: &str, args: &[&str]) -> (bool, String) {
        combined(
            Command::new(self.get("CTR"))
                .args(["-a", self.socket(), "-n", namespace])
                .args(args),
        )
    }

    /// Runs the notary CLI against this world's notary-server (e.g. to sign a tag).
    pub fn notary(&self, args: &str) {
        notary_cli(self.get("NOTARY_DIR"), args);
    }

    /// `crictl` (containerd 2.x only) against this containerd's CRI; (success, output).
    pub fn crictl(&self, args: &[&str]) -> (bool, String) {
        let endpoint = format!("unix://{}", self.socket());
        combined(
            Command::new(self.get("CRICTL"))
                .args([
                    "--runtime-endpoint",
                    &endpoint,
                    "--image-endpoint",
                    &endpoint,
                ])
                .args(["--config", "/dev/null", "--timeout", "20s"])
                .args(args),
        )
    }

    /// An `oci-archive` of the image layout `layout` (in this world's dir) named `name`,
    /// for `ctr images import`.
    pub fn archive(&self, layout: &str, name: &str) -> PathBuf {
        let archive = self.dir.path().join(format!("{layout}.tar"));
        let st = Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(format!("oci:{}", self.dir.path().join(layout).display()))
            .arg(format!("oci-archive:{}:{name}", archive.display()))
            .status()
            .unwrap();
        assert!(st.success(), "skopeo copy of {layout}");
        archive
    }

    /// `ctr images pull --local`: the client-side pull path on containerd 2.x.
    pub fn pull_local(&self, namespace: &str, reference: &str) -> (bool, String) {
        self.ctr(
            namespace,
            &[
                "images",
                "pull",
                "--local",
                "--plain-http",
                "--snapshotter",
                "native",
                reference,
            ],
        )
    }

    /// `ctr images pull`: on 1.6 containerd's client-side path, which no verifier sees;
    /// on 2.x the transfer service, which runs the image verifier.
    pub fn pull(&self, namespace: &str, reference: &str) -> (bool, String) {
        self.ctr(
            namespace,
            &[
                "images",
                "pull",
                "--plain-http",
                "--snapshotter",
                "native",
                reference,
            ],
        )
    }

    /// Image names in `namespace`.
    pub fn images(&self, namespace: &str) -> Vec<String> {
        let (ok, out) = self.ctr(namespace, &["images", "ls", "-q"]);
        assert!(ok, "ctr images ls: {out}");
        out.lines().map(str::to_owned).collect()
    }

    /// Stops the notary-server (the trust server becomes unreachable).
    pub fn stop_notary(&self) {
        kill(self.get("NOTARY_SERVER_PID"));
        std::thread::sleep(Duration::from_millis(200));
    }

    /// Kills containerd and starts it again on the same state and socket.
    pub fn restart(&mut self) {
        kill(self.get("CONTAINERD_PID"));
        let pid: i32 = self.get("CONTAINERD_PID").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let root = repo_root().display().to_string();
        let up = if self.get("CONTAINERD_FLAVOR") == "2" {
            format!(". {root}/scripts/lib-tools.sh; go_tools_env; containerd2_up")
        } else {
            "containerd_up".to_owned()
        };
        let script = format!(
            ". {root}/tests/notary/lib.sh; . {root}/tests/containerd/lib.sh; {up} {dir} && cat {dir}/containerd.pid",
            dir = self.dir.path().display()
        );
        let vars = ["PULLGUARD_SOCKET", "VERIFIER", "CONTAINERD2_CRI_IMAGES"];
        let out = Command::new("bash")
            .arg("-c")
            .arg(script)
            .envs(vars.iter().map(|k| (*k, self.get(k))))
            .output()
            .unwrap();
        assert!(out.status.success(), "containerd did not restart");
        let pid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        self.env.insert("CONTAINERD_PID".to_owned(), pid);
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.get("CONTAINERD_FLAVOR") == "2" {
            // Pods and containers first (their shims and processes outlive containerd),
            // then any shim of this containerd that is left.
            let _ = self.crictl(&["rmp", "--all", "--force"]);
            let _ = Command::new("pkill")
                .args([
                    "-f",
                    &format!("containerd-shim-runc-v2 .*-address {}", self.socket()),
                ])
                .status();
        }
        for pid in [
            "CONTAINERD_PID",
            "REGISTRY_PID",
            "NOTARY_SERVER_PID",
            "NOTARY_SIGNER_PID",
        ] {
            kill(self.get(pid));
        }
    }
}

/// Runs a serve script (it starts servers and writes DIR/env) in a fresh temp dir.
pub fn serve(script: &str, hint: &str) -> (tempfile::TempDir, HashMap<String, String>) {
    serve_with(script, hint, &[])
}

/// [`serve`] with environment variables for the script.
pub fn serve_with(
    script: &str,
    hint: &str,
    env: &[(&str, &str)],
) -> (tempfile::TempDir, HashMap<String, String>) {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("bash")
        .arg(repo_root().join(script))
        .arg(dir.path())
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    if !status.success() {
        // What the script started before it failed has no env file to be stopped by:
        // every pid file it wrote is.
        stop_pid_files(dir.path());
    }
    assert!(status.success(), "{hint}");
    let env = read_env(&dir.path().join("env"));
    (dir, env)
}

/// Stops the process of every `*.pid` or `pid` file below `dir`.
fn stop_pid_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            stop_pid_files(&p);
        } else if name == "pid" || name.ends_with(".pid") {
            if let Ok(pid) = std::fs::read_to_string(&p) {
                kill(pid.trim());
            }
        }
    }
}

/// A TCP port on 127.0.0.1 nobody listens on now and no parallel test claimed.
///
/// Not the kernel's port 0: that comes from the ephemeral range, where an outgoing
/// connection may take it before the server binds, and two tests asking at once may get
/// the same one. The rule (and the claim directory) is `tests/lib/free_port.py`'s, so the
/// serve scripts and these tests never pick the same port either.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    use std::os::unix::fs::MetadataExt;
    const LOW: u16 = 20000;
    const HIGH: u16 = 32000;
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let dir = std::env::temp_dir().join(format!("pullguard-ports-{uid}"));
    std::fs::create_dir_all(&dir).unwrap();
    for _ in 0..10_000 {
        // RandomState is seeded per process and per instance: random enough to spread picks.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(std::process::id().into());
        let port = LOW + (h.finish() % u64::from(HIGH - LOW)) as u16;
        let claim = dir.join(port.to_string());
        if let Ok(meta) = std::fs::metadata(&claim) {
            let age = meta.modified().ok().and_then(|m| m.elapsed().ok());
            if age.is_some_and(|a| a > Duration::from_secs(120)) {
                let _ = std::fs::remove_file(&claim);
            }
            continue;
        }
        let claimed = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&claim)
            .is_ok();
        if claimed && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}-{HIGH}");
}

fn read_env(path: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

/// Paths of one daemon's world.
pub struct World {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub events: PathBuf,
    pub state: PathBuf,
    pub keys: PathBuf,
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().to_path_buf();
        World {
            config: p.join("etc/pullguard.toml"),
            socket: p.join("run/pullguard.sock"),
            events: p.join("log/events.jsonl"),
            state: p.join("state"),
            keys: p.join("keys"),
            dir,
        }
    }

    /// The `[daemon]` section for this world. The containerd watcher is off unless
    /// `extra` names a socket: tests must never touch the host's containerd.
    pub fn daemon_section(&self, extra: &str) -> String {
        let watcher = if extra.contains("containerd_socket") {
            ""
        } else {
            "containerd_socket = \"\"\n"
        };
        // Never the host's NRI socket either.
        let nri = if extra.contains("nri_socket") {
            ""
        } else {
            "nri_socket = \"\"\n"
        };
        // Nor Sigstore's CDN (tests reach nothing outside 127.0.0.1).
        let tuf = if extra.contains("sigstore_tuf") {
            ""
        } else {
            "sigstore_tuf = \"\"\n"
        };
        format!(
            "[daemon]\nsocket = \"{}\"\nstate_dir = \"{}\"\nkeys_dir = \"{}\"\nevents_file = \"{}\"\ncache_ttl = \"1s\"\n{watcher}{nri}{tuf}{extra}\n",
            self.socket.display(),
            self.state.display(),
            self.keys.display(),
            self.events.display()
        )
    }

    /// `[trust_server.notary]` for a running notary.
    pub fn server_section(notary: &Notary) -> String {
        format!(
            "[trust_server.notary]\nurl = \"{}\"\nca_file = \"{}\"\ntimeout = \"2s\"\n\n[defaults]\ntrust_server = \"notary\"\ntofu = true\n",
            notary.get("NOTARY_URL"),
            notary.get("NOTARY_CA")
        )
    }

    pub fn write_config(&self, text: &str) {
        std::fs::create_dir_all(self.config.parent().unwrap()).unwrap();
        std::fs::write(&self.config, text).unwrap();
    }

    pub fn events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.events)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
            .collect()
    }

    pub fn events_of(&self, kind: &str) -> Vec<serde_json::Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == kind)
            .collect()
    }
}

/// A workspace binary: Cargo's path when this package builds it, else beside the test
/// executable (target/debug), where `cargo test --workspace` puts every binary.
pub fn bin(name: &str) -> PathBuf {
    if name == "pullguardd" {
        if let Some(p) = option_env!("CARGO_BIN_EXE_pullguardd") {
            return PathBuf::from(p);
        }
    }
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(Path::parent).unwrap().join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace` first",
        path.display()
    );
    path
}

/// The real pullguardd binary.
pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
}

impl Daemon {
    pub fn start(world: &World) -> Daemon {
        Daemon::start_with_env(world, &[])
    }

    /// [`Daemon::start`] with extra environment variables.
    pub fn start_with_env(world: &World, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_with(world, env, &[])
    }

    /// [`Daemon::start`] with extra environment variables and arguments. Returns once
    /// something answers on the socket (with `--take-over`, that may still be the
    /// daemon it replaces).
    pub fn start_with(world: &World, env: &[(&str, &str)], args: &[&str]) -> Daemon {
        let child = Command::new(bin("pullguardd"))
            .arg("--config")
            .arg(&world.config)
            .args(args)
            .env("PULLGUARD_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let d = Daemon {
            child,
            socket: world.socket.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::os::unix::net::UnixStream::connect(&d.socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "pullguardd did not open its socket"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    /// Starts pullguardd expecting it to refuse to run; returns what it said.
    pub fn refused(world: &World) -> String {
        let out = Command::new(bin("pullguardd"))
            .arg("--config")
            .arg(&world.config)
            .output()
            .unwrap();
        assert!(!out.status.success(), "pullguardd started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// SIGTERM, and wait.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }

    /// SIGHUP.
    pub fn hup(&self) {
        let _ = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status();
    }

    pub async fn client(&self) -> PullguardClient<Channel> {
        connect(&self.socket).await
    }

    /// `Status` from whichever daemon answers on this socket now.
    pub async fn status(&self) -> daemon::api::StatusResponse {
        self.client()
            .await
            .status(daemon::api::StatusRequest {})
            .await
            .unwrap()
            .into_inner()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn connect(socket: &Path) -> PullguardClient<Channel> {
    api::connect(socket, std::time::Duration::from_secs(5))
        .await
        .unwrap()
}

pub async fn verify(
    client: &mut PullguardClient<Channel>,
    image: &str,
    digest: &str,
) -> VerifyResponse {
    client
        .verify(VerifyRequest {
            image: image.to_owned(),
            digest: digest.to_owned(),
            source: "test".to_owned(),
            ..VerifyRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// Polls `f` until it returns Some, for up to `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
