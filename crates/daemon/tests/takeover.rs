//! A rolling upgrade on one node (the Kubernetes DaemonSet's maxSurge): a second, real
//! pullguardd started with --take-over replaces the first on its socket without a moment
//! with no listener, and the first, stopping, leaves the new socket in place.

mod harness;

use std::time::{Duration, Instant};

use harness::{Daemon, World};

fn allow_all(world: &World) -> String {
    format!(
        "{}\n[[rule]]\nname = \"all\"\nmatch = \"**\"\nmode = \"audit\"\nrequire = \"any\"\n",
        world.daemon_section("")
    )
}

/// The events file of the daemon that answers on `daemon`'s socket now.
async fn answering(daemon: &Daemon) -> String {
    daemon.status().await.events_file
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_daemon_takes_the_socket_over_and_the_old_one_leaves_it() {
    let old_world = World::new();
    old_world.write_config(&allow_all(&old_world));
    let mut old = Daemon::start(&old_world);

    // The same socket, another events file to tell the two apart.
    let mut new_world = World::new();
    new_world.socket = old_world.socket.clone();
    new_world.write_config(&allow_all(&new_world));

    // Without --take-over a running daemon's socket is not touched, and the error says
    // what would.
    let said = Daemon::refused(&new_world);
    assert!(
        said.contains("in use by a running pullguardd") && said.contains("--take-over"),
        "{said}"
    );
    assert_eq!(
        answering(&old).await,
        old_world.events.display().to_string()
    );

    let mut new = Daemon::start_with(&new_world, &[], &["--take-over"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while answering(&new).await != new_world.events.display().to_string() {
        assert!(
            Instant::now() < deadline,
            "the new pullguardd never answered on the socket"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // No staged socket left beside it.
    let dir = old_world.socket.parent().unwrap();
    let names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [old_world.socket.file_name().unwrap()], "{names:?}");

    // The old one stops and leaves the path to the new one.
    old.stop();
    assert!(
        old_world.socket.exists(),
        "the old pullguardd removed the new socket"
    );
    assert_eq!(
        answering(&new).await,
        new_world.events.display().to_string()
    );

    // The new one, stopping, removes its own.
    new.stop();
    assert!(
        !old_world.socket.exists(),
        "a stopped pullguardd left its socket"
    );
}
