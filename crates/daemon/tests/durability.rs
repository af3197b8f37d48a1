//! No rejection is answered before its event is on disk, under concurrent load.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod harness;

use harness::{verify, Daemon, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_rejection_is_on_disk_before_its_answer() {
    let world = World::new();
    world.write_config(&format!(
        "{}[[rule]]\nname = \"no\"\nmatch = \"registry.test/blocked/**\"\nrequire = \"reject\"\n\n[[rule]]\nname = \"yes\"\nmatch = \"registry.test/open/**\"\nrequire = \"any\"\n",
        world.daemon_section("")
    ));
    let daemon = Daemon::start(&world);
    let client = daemon.client().await;
    let events = world.events.clone();
    let mut tasks = Vec::new();
    for i in 0..300 {
        let mut c = client.clone();
        let events = events.clone();
        tasks.push(tokio::spawn(async move {
            let image = if i % 3 == 0 {
                format!("registry.test/open/app:{i}")
            } else {
                format!("registry.test/blocked/app:{i}")
            };
            let v = verify(&mut c, &image, "").await;
            if !v.allowed {
                // Read the file the moment the answer arrives.
                let text = tokio::fs::read_to_string(&events).await.unwrap();
                assert!(
                    text.contains(&v.event_id),
                    "rejection {} answered before its event was written",
                    v.event_id
                );
            }
            v
        }));
    }
    let mut rejected = Vec::new();
    for t in tasks {
        let v = t.await.unwrap();
        if !v.allowed {
            assert_eq!(v.reason, "rejected_by_policy");
            rejected.push(v.event_id);
        }
    }
    assert_eq!(rejected.len(), 200);
    let on_disk = world.events_of("pull.rejected");
    assert_eq!(
        on_disk.len(),
        rejected.len(),
        "one event per rejection, none lost, none extra"
    );
    let mut ids: Vec<&str> = on_disk
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 200, "event IDs are unique");
}
