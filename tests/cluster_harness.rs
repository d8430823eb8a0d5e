//! Self-test of the Redis Cluster harness (`tests/support/cluster.rs`):
//! the cluster starts healthy, keys route by their `{hash tag}`, a master
//! killed with SIGKILL is replaced by its replica, a slot moves with its
//! keys while a writer keeps writing, `INFO commandstats` sums over the
//! nodes, and no node outlives its test — not even a test process that
//! exits without running destructors.
//!
//! Native processes only: needs `redis-server` and `redis-cli` (or
//! `valkey-server` and `valkey-cli` with `REDIS_TEST_SERVER=valkey`), no
//! Docker.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::AsyncCommands;
use support::{ClusterOptions, Role, ServerKind, TestCluster, slot_of};
use tokio::sync::watch;

/// Generous bound for a failover on a loaded 2-core machine (about 2 s with
/// the harness's 1 s node timeout).
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_starts_with_every_slot_covered_and_every_replica_linked() {
    let cluster = TestCluster::start(3, 1).await;
    let nodes = cluster.nodes();
    assert_eq!(nodes.len(), 6);
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    let slots: usize = masters.iter().map(|m| m.slot_count()).sum();
    assert_eq!(slots, 16384, "{masters:#?}");
    for master in &masters {
        let replicas = cluster.replicas_of(&master.id);
        assert_eq!(
            replicas.len(),
            1,
            "replicas of {}: {replicas:?}",
            master.port
        );
        assert_eq!(replicas[0].role, Role::Replica);
        assert!(replicas[0].slots.is_empty());
    }
    assert_eq!(cluster.seed_urls().len(), 3);
    assert!(
        cluster
            .seed_urls()
            .iter()
            .all(|u| u.starts_with("redis://127.0.0.1:"))
    );
    let info = cluster.server_info().await;
    assert_eq!(info.kind, ServerKind::from_env(), "{info}");
    assert_eq!(info.mode, "cluster");
    eprintln!(
        "{info} cluster of 3+3 healthy in {} ms",
        cluster.start_time().as_millis()
    );
}

/// The harness's CRC16 is the server's: `CLUSTER KEYSLOT` agrees, hash tags
/// included (and `{}` or an unclosed `{` hash the whole key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_of_matches_cluster_keyslot() {
    let cluster = TestCluster::start(3, 0).await;
    let mut conn = cluster.node_connection(cluster.masters()[0].port).await;
    let keys = [
        "123456789",
        "team-1",
        "sbx:{team-1}:rec:s1",
        "sbx:{team-1}:lease:s1",
        "{user1000}.following",
        "foo{}{bar}",
        "foo{{bar}}zap",
        "foo{bar}{zap}",
        "no-closing{brace",
        "",
    ];
    for key in keys {
        let server: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(slot_of(key), server, "slot of {key:?}");
    }
    assert_eq!(slot_of("123456789"), 12739);
    assert_eq!(slot_of("team-7"), slot_of("sbx:{team-7}:expiry"));
}

/// Teams chosen by `teams_on_every_master` put keys on every master, and a
/// cluster client's writes land on the master the harness says owns them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_route_to_the_master_of_their_hash_tag() {
    let cluster = TestCluster::start(3, 0).await;
    let teams = cluster.teams_on_every_master(2);
    assert_eq!(teams.len(), 6);
    let mut conn = cluster.cluster_connection().await;
    for team in &teams {
        let key = format!("sbx:{{{team}}}:rec:s1");
        let _: () = conn.set(&key, team).await.unwrap();
    }
    let mut per_master: BTreeMap<u16, usize> = BTreeMap::new();
    for team in &teams {
        let key = format!("sbx:{{{team}}}:rec:s1");
        let owner = cluster.master_for_slot(slot_of(team));
        *per_master.entry(owner.port).or_default() += 1;
        for master in cluster.masters() {
            let mut node = cluster.node_connection(master.port).await;
            // READONLY-free check of the keyspace: DBSIZE-like per key via
            // CLUSTER COUNTKEYSINSLOT, which any master answers for any slot.
            let here: u64 = redis::cmd("CLUSTER")
                .arg("COUNTKEYSINSLOT")
                .arg(slot_of(&key))
                .query_async(&mut node)
                .await
                .unwrap();
            assert_eq!(
                here > 0,
                master.id == owner.id,
                "{key} on {} (owner {})",
                master.port,
                owner.port
            );
        }
    }
    assert_eq!(per_master.len(), 3, "{per_master:?}");
    assert!(per_master.values().all(|&n| n == 2), "{per_master:?}");
}

/// kill -9 of a master: its replica takes over, the cluster is healthy
/// again, acknowledged-and-replicated data is there, and the old master
/// restarted comes back as a replica of the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_is_replaced_by_its_replica() {
    let cluster = TestCluster::start(3, 1).await;
    let team = &cluster.teams_on_every_master(1)[0];
    let slot = slot_of(team);
    let key = format!("sbx:{{{team}}}:rec:s1");
    let master = cluster.master_for_slot(slot);
    let replica = cluster.replicas_of(&master.id)[0].clone();
    {
        let mut conn = cluster.node_connection(master.port).await;
        let _: () = conn.set(&key, "kept").await.unwrap();
        let acked: u64 = redis::cmd("WAIT")
            .arg(1)
            .arg(10_000)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(acked, 1, "the replica acknowledged the write");
    }

    let killed = cluster.kill_master_of(slot).await;
    assert_eq!(killed.id, master.id);
    let failover = cluster.wait_for_failover(slot, FAILOVER_TIMEOUT).await;
    eprintln!(
        "failover of slot {slot}: replica {} promoted {} ms after kill -9 of {}, cluster \
         healthy after {} ms",
        failover.promoted.port,
        failover.promoted_after.as_millis(),
        failover.killed.port,
        failover.healthy_after.as_millis()
    );
    assert_eq!(failover.promoted.id, replica.id);
    assert_eq!(failover.promoted.role, Role::Master);
    assert!(failover.promoted.owns(slot));
    assert!(failover.promoted_after <= failover.healthy_after);
    assert!(!cluster.node(killed.port).alive);
    assert_eq!(cluster.master_for_slot(slot).id, replica.id);

    let mut conn = cluster.cluster_connection().await;
    let got: Option<String> = conn.get(&key).await.unwrap();
    assert_eq!(got.as_deref(), Some("kept"));

    let took = cluster.restart_node(killed.port, FAILOVER_TIMEOUT).await;
    let back = cluster.node(killed.port);
    eprintln!(
        "old master rejoined as {:?} in {} ms",
        back.role,
        took.as_millis()
    );
    assert!(back.alive);
    assert_eq!(back.role, Role::Replica);
    assert_eq!(back.master_id.as_deref(), Some(replica.id.as_str()));
}

/// A writer INCRs counters of one slot the whole time the slot moves to
/// another master: first half the counters are migrated and the writer
/// does two full rounds (reaching migrated counters through -ASK), then the
/// rest, then two more rounds (through -MOVED). No increment is lost, the
/// source holds nothing of the slot, and the target served ASKING.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_moves_with_its_keys_while_a_writer_keeps_writing() {
    const COUNTERS: usize = 20;
    let cluster = TestCluster::start(3, 0).await;
    let team = cluster.teams_on_every_master(1)[0].clone();
    let slot = slot_of(&team);
    let counters: Vec<String> = (0..COUNTERS)
        .map(|i| format!("sbx:{{{team}}}:counter:{i}"))
        .collect();
    // Payload keys, so the move has batches of its own.
    let mut conn = cluster.cluster_connection().await;
    for i in 0..300 {
        let _: () = conn
            .set(format!("sbx:{{{team}}}:rec:{i}"), i)
            .await
            .unwrap();
    }
    for c in &counters {
        let _: () = conn.set(c, 0).await.unwrap();
    }
    cluster.reset_stats().await;

    let acks = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (round_tx, mut rounds) = watch::channel(0u64);
    let writer = {
        let (acks, stop, counters) = (Arc::clone(&acks), Arc::clone(&stop), counters.clone());
        tokio::spawn(async move {
            let mut expected = vec![0i64; counters.len()];
            let mut round = 0u64;
            while !stop.load(Ordering::SeqCst) {
                for (i, c) in counters.iter().enumerate() {
                    let n: i64 = conn
                        .incr(c, 1)
                        .await
                        .unwrap_or_else(|e| panic!("INCR {c} during the move: {e}"));
                    expected[i] += 1;
                    assert_eq!(n, expected[i], "{c} lost an increment");
                    acks.fetch_add(1, Ordering::SeqCst);
                }
                round += 1;
                let _ = round_tx.send(round);
            }
            expected
        })
    };
    let two_more_rounds = |rounds: &mut watch::Receiver<u64>| {
        let from = *rounds.borrow();
        let mut rounds = rounds.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(30), rounds.wait_for(|r| *r >= from + 2))
                .await
                .expect("the writer is stuck")
                .expect("the writer ended");
        }
    };
    two_more_rounds(&mut rounds).await;

    let from = cluster.master_for_slot(slot);
    let to = cluster
        .masters()
        .into_iter()
        .find(|m| m.id != from.id)
        .unwrap();
    let mut slot_move = cluster.begin_slot_move(slot, &to.id).await;
    slot_move.migrate_keys(&counters[..COUNTERS / 2]).await;
    two_more_rounds(&mut rounds).await;
    let report = slot_move.finish().await;
    two_more_rounds(&mut rounds).await;
    stop.store(true, Ordering::SeqCst);
    let expected = writer.await.expect("the writer panicked");

    eprintln!(
        "moved slot {slot} ({} keys, {} MIGRATE) from {} to {} in {} ms; {} increments",
        report.keys,
        report.batches,
        report.from.port,
        report.to.port,
        report.took.as_millis(),
        acks.load(Ordering::SeqCst)
    );
    assert_eq!(report.keys, 300 + COUNTERS);
    assert_eq!(cluster.master_for_slot(slot).id, to.id);
    let mut conn = cluster.cluster_connection().await;
    for (c, want) in counters.iter().zip(&expected) {
        let got: i64 = conn.get(c).await.unwrap();
        assert_eq!(got, *want, "{c}");
    }
    let stats = cluster.commandstats_per_node().await;
    let asking = stats[&to.port].get("asking").copied().unwrap_or(0);
    assert!(
        asking > 0,
        "the target never served ASKING: the writer did not reach migrated keys mid-move"
    );
}

/// `commandstats_all` sums every node's `INFO commandstats`, and
/// `reset_stats` zeroes them: SETs and SPUBLISHes spread over every master
/// add up exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commandstats_sum_over_every_node() {
    let cluster = TestCluster::start(3, 0).await;
    let teams = cluster.teams_on_every_master(3);
    let mut conn = cluster.cluster_connection().await;
    let _: () = conn.set(format!("{{{}}}:warm", teams[0]), 1).await.unwrap();
    cluster.reset_stats().await;
    for team in &teams {
        let _: () = conn.set(format!("sbx:{{{team}}}:rec:s1"), 1).await.unwrap();
        let _: () = conn.set(format!("sbx:{{{team}}}:rec:s2"), 2).await.unwrap();
        let _: i64 = redis::cmd("SPUBLISH")
            .arg(format!("sbx:{{{team}}}:events"))
            .arg("hello")
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let total = cluster.commandstats_all().await;
    assert_eq!(
        total.get("set"),
        Some(&(2 * teams.len() as u64)),
        "{total:?}"
    );
    assert_eq!(
        total.get("spublish"),
        Some(&(teams.len() as u64)),
        "{total:?}"
    );
    assert_eq!(total.get("publish"), None, "{total:?}");
    let per_node = cluster.commandstats_per_node().await;
    assert_eq!(per_node.len(), 3);
    assert!(
        per_node.values().all(|s| s.get("set") == Some(&6)),
        "3 teams per master, 2 SETs each: {per_node:?}"
    );
}

fn pids_of(cluster: &TestCluster) -> Vec<i32> {
    cluster.pids().into_iter().map(|p| p as i32).collect()
}

async fn all_gone(pids: &[i32]) -> bool {
    for _ in 0..250 {
        if pids.iter().all(|&p| !support::server::process_alive(p)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_cluster_kills_every_node_and_removes_its_files() {
    let cluster = TestCluster::start(3, 0).await;
    let pids = pids_of(&cluster);
    assert_eq!(pids.len(), 3, "{pids:?}");
    assert!(pids.iter().all(|&p| support::server::process_alive(p)));
    let root = std::env::temp_dir();
    let before: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("sc-cluster-{}-", std::process::id())))
        .collect();
    assert_eq!(before.len(), 1, "{before:?}");
    drop(cluster);
    assert!(
        all_gone(&pids).await,
        "nodes outlived the cluster: {pids:?}"
    );
    assert!(!root.join(&before[0]).exists(), "{} left behind", before[0]);
}

/// Runs in a child process (see below): starts a cluster, prints its
/// nodes' pids and exits at once — no destructor runs, as when nextest
/// kills a test that overran its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_child_entry() {
    if std::env::var("SC_CLUSTER_ORPHAN_CHILD").is_err() {
        return; // not a child run
    }
    let cluster = TestCluster::start(3, 0).await;
    println!("PIDS {:?}", pids_of(&cluster));
    std::process::exit(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_process_that_dies_without_cleanup_leaves_no_node_running() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "orphan_child_entry",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("SC_CLUSTER_ORPHAN_CHILD", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let pids: Vec<i32> = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| {
                // libtest may have printed "test orphan_child_entry ... " first.
                l.split("PIDS [").nth(1).map(|rest| {
                    rest.trim_end_matches(']')
                        .split(", ")
                        .map(|p| p.parse().unwrap())
                        .collect()
                })
            })
            .expect("the child printed its nodes' pids")
    })
    .await
    .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(pids.len(), 3, "{pids:?}");
    assert!(
        all_gone(&pids).await,
        "cluster nodes outlived their test process: {pids:?}"
    );
}

/// A TLS-only cluster (`tls-cluster yes`, `tls-replication yes`): created
/// and checked over TLS, and a cluster client trusting the private CA
/// routes keys across it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_serves_clients_that_trust_its_ca() {
    let cluster = TestCluster::start_with(ClusterOptions::new(3, 1).tls()).await;
    assert!(
        cluster
            .seed_urls()
            .iter()
            .all(|u| u.starts_with("rediss://127.0.0.1:"))
    );
    let mut conn = cluster.cluster_connection().await;
    for team in cluster.teams_on_every_master(1) {
        let key = format!("sbx:{{{team}}}:rec:s1");
        let _: () = conn.set(&key, &team).await.unwrap();
        let got: String = conn.get(&key).await.unwrap();
        assert_eq!(got, team);
    }
    // The plaintext protocol gets nothing from a TLS port.
    let plain = support::server::loopback_client(cluster.masters()[0].port);
    let refused: redis::RedisResult<String> =
        support::server::admin_query(&plain, &redis::cmd("PING")).await;
    assert!(refused.is_err(), "plaintext PING answered: {refused:?}");
}
