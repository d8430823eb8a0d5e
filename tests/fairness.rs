//! Fair waiting: a request that waits to re-decide is decided before any
//! request that arrived after it began waiting can start a transition on
//! that sandbox (issue 13). The flood that used to starve a kill for up to
//! 15 s: 12 tasks on 3 coordinators requesting 100 ms snapshots of one
//! sandbox, and a kill from a fourth.

mod fixture;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fixture::{TEAM, coordinators, raw, sandbox};
use sandbox_coordinator::{Action, BeginOptions, Begun};
use support::TestRedis;
use tokio::sync::Mutex;
use tokio::time::{Instant, timeout};

const SNAPSHOT: Duration = Duration::from_millis(100);

async fn server_now_us(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let t = raw(conn, &["TIME"]).await;
    t[0].parse::<u64>().unwrap() * 1_000_000 + t[1].parse::<u64>().unwrap()
}

/// Five trials of the flood. In each, the fences of the snapshots that
/// started (server µs) are compared with the kill's: between the moment the
/// kill was asked (server time read just before) and its start, at most one
/// snapshot may start — one whose script ran just before the kill's. Every
/// later snapshot request waits behind the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_behind_a_snapshot_flood_is_decided_before_later_snapshots_start() {
    let redis = TestRedis::start().await;
    let coords = coordinators(&redis, 4).await;
    let mut conn = redis.client().await;
    let mut waits = Vec::new();
    for trial in 0..5 {
        let id = format!("s{trial}");
        coords[0].register(sandbox(&id, "e1")).await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let fences = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for coord in &coords[..3] {
            for _ in 0..4 {
                let (coord, id, stop, fences) = (
                    coord.clone(),
                    id.clone(),
                    Arc::clone(&stop),
                    Arc::clone(&fences),
                );
                tasks.push(tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let opts = BeginOptions::default().wait_timeout(Duration::from_secs(10));
                        match coord.begin(TEAM, &id, Action::Snapshot, opts).await {
                            Ok(Begun::Started(t)) => {
                                fences.lock().await.push(t.fence());
                                tokio::time::sleep(SNAPSHOT).await;
                                t.succeed().await.unwrap();
                            }
                            Ok(Begun::AlreadyDone(_)) => {}
                            // Invalid once the kill is in: the flood is over.
                            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                        }
                    }
                }));
            }
        }
        // Let the flood run, then ask for the kill.
        tokio::time::sleep(Duration::from_millis(350)).await;
        let asked = server_now_us(&mut conn).await;
        let t0 = Instant::now();
        let kill = timeout(
            Duration::from_secs(30),
            coords[3].begin(TEAM, &id, Action::Kill, BeginOptions::default()),
        )
        .await
        .expect("the kill starved")
        .unwrap();
        let waited = t0.elapsed();
        let Begun::Started(kill) = kill else {
            panic!("trial {trial}: the kill did not start: {kill:?}");
        };
        let kill_fence = kill.fence();
        kill.succeed().await.unwrap();
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            timeout(Duration::from_secs(30), t).await.unwrap().unwrap();
        }
        let fences = fences.lock().await.clone();
        let overtook = fences
            .iter()
            .filter(|f| (asked..kill_fence).contains(f))
            .count();
        eprintln!(
            "trial {trial}: {} snapshots started, kill waited {waited:?}, {overtook} started while it was asked",
            fences.len()
        );
        assert!(fences.len() >= 2, "trial {trial}: the flood did not run");
        assert!(
            overtook <= 1,
            "trial {trial}: {overtook} snapshots started after the kill was asked"
        );
        assert!(
            fences.iter().all(|f| *f < kill_fence),
            "a snapshot after the kill"
        );
        waits.push(waited);
    }
    waits.sort();
    eprintln!("kill waits over 5 trials: {waits:?}");
}
