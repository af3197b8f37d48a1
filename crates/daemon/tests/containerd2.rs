//! pullguard under a real containerd 2.x (the version pinned in scripts/lib-tools.sh,
//! built from the Go module proxy): `pullguard-verifier` in the image verifier's
//! `bin_dir` exactly as packaging/containerd/config-2.x.toml ships it, pullguardd's
//! watcher on the same socket, CRI driven through the real `crictl`, a docker-registry
//! holding images pushed with skopeo, and a notary-server where the real notary CLI
//! signed some of them. Each test backs rows of docs/enforcement.md's 2.x columns.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod harness;

use harness::{eventually, nth_event, until_gone, Containerd, Daemon, World};
use serde_json::Value;

fn policy(world: &World, cd: &Containerd, mode: &str) -> String {
    cd.demo_policy(world, mode)
}

/// containerd 2.x, pullguardd (watcher on) under `mode`, the first sweep done.
async fn up(cri_images: &str, mode: &str) -> (World, Containerd, Daemon) {
    let world = World::new();
    let cd = Containerd::start_v2(&world, cri_images);
    world.write_config(&policy(&world, &cd, mode));
    let daemon = Daemon::start(&world);
    nth_event(&world, "watcher.swept", 1).await;
    (world, cd, daemon)
}

/// Waits for an event of `kind` about `image`.
async fn event_for(world: &World, kind: &str, image: &str) -> Value {
    eventually(20, || async move {
        world
            .events_of(kind)
            .into_iter()
            .find(|e| e["image"] == image)
    })
    .await
    .unwrap_or_else(|| panic!("no {kind} event for {image}; events: {:#?}", world.events()))
}

/// A pull the verifier refused: failed, with pullguard's line and reason in containerd's
/// error, nothing stored, and a `pull.rejected` event from the bindir verifier.
async fn refused_by_verifier(
    world: &World,
    cd: &Containerd,
    (ok, out): (bool, String),
    namespace: &str,
    image: &str,
    reason: &str,
) {
    assert!(!ok, "the pull of {image} succeeded: {out}");
    assert!(
        out.contains("pullguard: rejected") && out.contains(&format!("[{reason}]")),
        "containerd's error does not carry pullguard's refusal ({reason}): {out}"
    );
    assert!(
        !cd.images(namespace).iter().any(|i| i == image),
        "{image} was stored although the verifier refused it"
    );
    let e = eventually(20, || async move {
        world
            .events_of("pull.rejected")
            .into_iter()
            .find(|e| e["image"] == image && e["source"] == "containerd-bindir")
    })
    .await
    .unwrap_or_else(|| panic!("no verifier's rejection of {image}: {:#?}", world.events()));
    assert_eq!(e["reason"], reason, "{e}");
}

fn bindir_allowed(world: &World, image: &str) -> bool {
    world
        .events_of("pull.allowed")
        .iter()
        .any(|e| e["image"] == image && e["source"] == "containerd-bindir")
}

#[tokio::test(flavor = "multi_thread")]
async fn transfer_pulls_by_tag_digest_and_index_are_judged_before_anything_is_stored() {
    let (world, cd, _daemon) = up("", "enforce").await;
    let repo = cd.get("REPO").to_owned();

    // By tag.
    let unsigned = format!("{repo}:unsigned");
    let r = cd.pull("default", &unsigned);
    refused_by_verifier(&world, &cd, r, "default", &unsigned, "unknown_tag").await;
    let signed = format!("{repo}:signed");
    let (ok, out) = cd.pull("default", &signed);
    assert!(ok, "the signed pull failed: {out}");
    assert!(bindir_allowed(&world, &signed), "{:#?}", world.events());

    // By digest: allowed only when a signed tag resolves to it.
    let by_digest = format!("{repo}@{}", cd.get("UNSIGNED_DIGEST"));
    let r = cd.pull("default", &by_digest);
    refused_by_verifier(&world, &cd, r, "default", &by_digest, "digest_mismatch").await;
    let signed_by_digest = format!("{repo}@{}", cd.get("SIGNED_DIGEST"));
    let (ok, out) = cd.pull("default", &signed_by_digest);
    assert!(ok, "the signed digest's pull failed: {out}");

    // An index: its own digest is what is signed and what the verifier is asked about.
    let index = format!("{repo}:index");
    let (ok, out) = cd.pull("default", &index);
    assert!(ok, "the signed index's pull failed: {out}");
    let e = event_for(&world, "pull.allowed", &index).await;
    assert_eq!(e["digest"], cd.get("INDEX_DIGEST"));
    let index_unsigned = format!("{repo}:index-unsigned");
    let r = cd.pull("default", &index_unsigned);
    refused_by_verifier(&world, &cd, r, "default", &index_unsigned, "unknown_tag").await;

    // A re-pushed tag: `signed` now names other content, which nobody signed.
    let st = std::process::Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ])
        .arg(format!(
            "oci:{}",
            cd.dir.path().join("img-unsigned").display()
        ))
        .arg(format!("docker://{signed}"))
        .status()
        .unwrap();
    assert!(st.success());
    let r = cd.pull("other", &signed);
    refused_by_verifier(&world, &cd, r, "other", &signed, "digest_mismatch").await;
    // The record pulled before the re-push is untouched.
    let (_, list) = cd.ctr("default", &["images", "ls"]);
    let line = list.lines().find(|l| l.starts_with(&signed)).unwrap();
    assert!(line.contains(cd.get("SIGNED_DIGEST")), "{list}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cri_pulls_with_default_settings_go_through_the_verifier() {
    let (world, cd, _daemon) = up("", "enforce").await;
    let repo = cd.get("REPO").to_owned();
    let unsigned = format!("{repo}:unsigned");
    let r = cd.crictl(&["pull", &unsigned]);
    refused_by_verifier(&world, &cd, r, "k8s.io", &unsigned, "unknown_tag").await;
    let signed = format!("{repo}:signed");
    let (ok, out) = cd.crictl(&["pull", &signed]);
    assert!(ok, "crictl pull of the signed image failed: {out}");
    assert!(bindir_allowed(&world, &signed), "{:#?}", world.events());
    assert!(cd.images("k8s.io").contains(&signed));
}

/// CRI configurations that take the local pull path: the verifier never runs, the
/// watcher removes what it refuses.
async fn cri_local_path_detected_and_removed(cri_images: &str) {
    let (world, cd, _daemon) = up(cri_images, "enforce").await;
    let repo = cd.get("REPO").to_owned();
    let unsigned = format!("{repo}:unsigned");
    let _ = cd.crictl(&["pull", &unsigned]);
    until_gone(&cd, "k8s.io", &unsigned).await;
    let rejected = event_for(&world, "pull.rejected", &unsigned).await;
    assert_eq!(rejected["source"], "containerd-watcher", "{rejected}");
    assert_eq!(rejected["namespace"], "k8s.io", "{rejected}");
    let removed = event_for(&world, "image.removed", &unsigned).await;
    assert_eq!(removed["digest"], cd.get("UNSIGNED_DIGEST"));
    // The verifier was not asked: this path skips it.
    assert!(
        !world
            .events()
            .iter()
            .any(|e| e["source"] == "containerd-bindir"),
        "{:#?}",
        world.events()
    );
    let signed = format!("{repo}:signed");
    let (ok, out) = cd.crictl(&["pull", &signed]);
    assert!(ok, "crictl pull of the signed image failed: {out}");
    event_for(&world, "pull.allowed", &signed).await;
    assert!(cd.images("k8s.io").contains(&signed));
}

#[tokio::test(flavor = "multi_thread")]
async fn cri_with_use_local_image_pull_is_detected_and_removed() {
    cri_local_path_detected_and_removed("use_local_image_pull = true").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cri_settings_that_fall_back_to_the_local_path_are_detected_and_removed() {
    // containerd 2.x logs "Falling back to local image pull mode" for this setting.
    cri_local_path_detected_and_removed("max_concurrent_downloads = 2").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn local_pull_import_tag_and_content_fetch_are_detected_and_removed() {
    let (world, cd, _daemon) = up("", "enforce").await;
    let repo = cd.get("REPO").to_owned();

    // ctr image pull --local: the client-side path.
    let local = format!("{repo}:unsigned");
    let _ = cd.pull_local("default", &local);
    until_gone(&cd, "default", &local).await;
    let e = event_for(&world, "image.removed", &local).await;
    assert_eq!(e["digest"], cd.get("UNSIGNED_DIGEST"));

    // ctr image import.
    let imported = format!("{repo}:imported");
    let archive = cd.archive("img-unsigned", &imported);
    let _ = cd.ctr("default", &["images", "import", archive.to_str().unwrap()]);
    until_gone(&cd, "default", &imported).await;
    event_for(&world, "image.removed", &imported).await;

    // ctr image tag: the signed content under a name nobody signed is judged by that name.
    let signed = format!("{repo}:signed");
    let (ok, out) = cd.pull("default", &signed);
    assert!(ok, "{out}");
    let alias = format!("{repo}:alias");
    let (ok, out) = cd.ctr("default", &["images", "tag", &signed, &alias]);
    assert!(ok, "{out}");
    until_gone(&cd, "default", &alias).await;
    let e = event_for(&world, "pull.rejected", &alias).await;
    assert_eq!(e["reason"], "unknown_tag", "{e}");
    assert!(cd.images("default").contains(&signed));

    // ctr content fetch: on 2.3 it writes an image record, which is checked like any other.
    let fetched = format!("{repo}:later");
    let _ = cd.ctr("default", &["content", "fetch", "--plain-http", &fetched]);
    until_gone(&cd, "default", &fetched).await;
    let e = event_for(&world, "image.removed", &fetched).await;
    assert_eq!(e["digest"], cd.get("LATER_DIGEST"));
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_down_refuses_transfer_pulls_and_its_restart_sweeps_what_came_meanwhile() {
    let (world, cd, mut daemon) = up("", "enforce").await;
    let repo = cd.get("REPO").to_owned();
    daemon.stop();

    // The verifier cannot ask: the pull fails closed, saying why and what to do.
    let signed = format!("{repo}:signed");
    let (ok, out) = cd.pull("default", &signed);
    assert!(!ok, "a pull went through with pullguardd down: {out}");
    assert!(
        out.contains("pullguardd") && out.contains("systemctl start pullguardd"),
        "{out}"
    );
    assert!(!cd.images("default").contains(&signed));

    // Meanwhile an unsigned image arrives by the local path, which nobody watches now.
    let unsigned = format!("{repo}:unsigned");
    let (ok, out) = cd.pull_local("default", &unsigned);
    assert!(ok, "{out}");
    assert!(cd.images("default").contains(&unsigned));

    // Back up: the start sweep removes it, and pulls are judged again.
    let _daemon = Daemon::start(&world);
    nth_event(&world, "watcher.swept", 2).await;
    until_gone(&cd, "default", &unsigned).await;
    let (ok, out) = cd.pull("default", &signed);
    assert!(ok, "the signed pull failed after the restart: {out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_reloaded_mid_run_governs_the_next_pull_and_sweeps_the_node() {
    let (world, cd, _daemon) = up("", "enforce").await;
    let repo = cd.get("REPO").to_owned();
    let unsigned = format!("{repo}:unsigned");

    // Audit: the verifier lets it through and records it.
    world.write_config(&policy(&world, &cd, "audit"));
    nth_event(&world, "policy.reloaded", 1).await;
    let (ok, out) = cd.pull("default", &unsigned);
    assert!(ok, "under audit the pull must go through: {out}");
    let e = event_for(&world, "pull.audited", &unsigned).await;
    assert_eq!(e["source"], "containerd-bindir", "{e}");
    assert_eq!(e["reason"], "unknown_tag", "{e}");

    // Enforce again: the sweep after the reload removes what audit let in.
    world.write_config(&policy(&world, &cd, "enforce"));
    nth_event(&world, "policy.reloaded", 2).await;
    until_gone(&cd, "default", &unsigned).await;
    let e = event_for(&world, "image.removed", &unsigned).await;
    assert_eq!(e["digest"], cd.get("UNSIGNED_DIGEST"));
    let r = cd.pull("default", &unsigned);
    refused_by_verifier(&world, &cd, r, "default", &unsigned, "unknown_tag").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn containerd_restarted_the_watcher_reconnects_and_the_verifier_still_runs() {
    let (world, mut cd, _daemon) = up("", "enforce").await;
    let repo = cd.get("REPO").to_owned();
    cd.restart();
    nth_event(&world, "watcher.disconnected", 1).await;
    nth_event(&world, "watcher.connected", 2).await;
    let unsigned = format!("{repo}:unsigned");
    let _ = cd.pull_local("default", &unsigned);
    until_gone(&cd, "default", &unsigned).await;
    let r = cd.pull("default", &unsigned);
    refused_by_verifier(&world, &cd, r, "default", &unsigned, "unknown_tag").await;
}

/// The migration on a real node: containerd 2.x pulls through the verifier; a rule that
/// accepts either proof lets an image signed only with cosign and one signed only with
/// Notary through, and refuses one signed by neither; then a rule that accepts cosign
/// alone refuses the Notary-only image. pullguardd reads containerd's own hosts.toml.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_accepting_either_proof_pulls_cosign_or_notary_signed_images_and_refuses_neither() {
    let world = World::new();
    let cd = Containerd::start_v2(&world, "");
    let repo = cd.get("REPO").to_owned();
    // REPO:later is signed with cosign only (bundle layout); REPO:signed with Notary only.
    let key = harness::cosign_sign(
        world.dir.path(),
        &format!("{repo}@{}", cd.get("LATER_DIGEST")),
    );
    let config = |proofs: &str| {
        format!(
            "{}{}cosign_keys = [\"{}\"]\ncosign_tlog = false\n\n[[rule]]\nname = \"demo\"\nmatch = \"127.0.0.1:*/demo/**\"\n{proofs}\n",
            world.daemon_section(&format!(
                "containerd_socket = \"{}\"\nregistry_config_path = \"{}\"",
                cd.socket(),
                cd.dir.path().join("certs.d").display()
            )),
            cd.server_section(),
            key.display()
        )
    };
    world.write_config(&config(
        "proofs = [\"notary-v1\", \"cosign\"]\nproofs_required = \"any\"",
    ));
    let _daemon = Daemon::start(&world);
    nth_event(&world, "watcher.swept", 1).await;

    for (tag, proof) in [("later", "cosign"), ("signed", "notary-v1")] {
        let image = format!("{repo}:{tag}");
        let (ok, out) = cd.pull("default", &image);
        assert!(ok, "{image}: {out}");
        let e = eventually(20, || async {
            world
                .events_of("pull.allowed")
                .into_iter()
                .find(|e| e["image"] == image && e["source"] == "containerd-bindir")
        })
        .await
        .unwrap_or_else(|| panic!("no verifier's allowance of {image}: {:#?}", world.events()));
        assert_eq!(e["proof"], proof, "{e}");
    }
    let unsigned = format!("{repo}:unsigned");
    refused_by_verifier(
        &world,
        &cd,
        cd.pull("default", &unsigned),
        "default",
        &unsigned,
        "no_signature",
    )
    .await;

    // Require cosign: the Notary-only image is refused (a namespace where it is not yet).
    world.write_config(&config("proofs = [\"cosign\"]"));
    nth_event(&world, "policy.reloaded", 1).await;
    let signed = format!("{repo}:signed");
    refused_by_verifier(
        &world,
        &cd,
        cd.pull("other", &signed),
        "other",
        &signed,
        "no_signature",
    )
    .await;
    let (ok, out) = cd.pull("other", &format!("{repo}:later"));
    assert!(ok, "the cosign-signed image under cosign alone: {out}");
}
