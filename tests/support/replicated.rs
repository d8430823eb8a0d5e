//! A primary with replicas (classic `replicaof` replication, no cluster) of
//! native processes for one test ([`TestReplicated`]): for `WAIT`-based
//! durability (`Builder::wait_for_replicas`) and for what a client sees when
//! its primary dies and a replica is promoted by hand (`REPLICAOF NO ONE`)
//! — fences after failover to a lagging replica, `READONLY` from a demoted
//! node.
//!
//! Every server is a `redis-server` (or `valkey-server`,
//! `REDIS_TEST_SERVER`) on a free loopback port in its own directory of one
//! private temp dir, without persistence; replicas start with `--replicaof
//! 127.0.0.1 <primary>` and `repl-diskless-sync-delay 0` (their first sync
//! starts at once). [`TestReplicated::start`] returns once every replica
//! reports `master_link_status:up` and the primary lists it `state=online`
//! (from then on it counts for `WAIT`). Members are named by [`Member`]; which
//! one is primary changes only through [`TestReplicated::promote`].
//! Dropping it SIGKILLs every server and removes the directory.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use super::server::{self, ServerInfo, ServerKind, ServerProcess};

/// Bound on replicas reaching `master_link_status:up`.
const LINK_TIMEOUT: Duration = Duration::from_secs(30);

/// A member of the group: the primary it was started with, or replica `i`
/// (0-based, in start order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Member {
    Primary,
    Replica(usize),
}

struct Node {
    port: u16,
    process: ServerProcess,
}

/// A primary and its replicas for one test.
pub struct TestReplicated {
    kind: ServerKind,
    root: PathBuf,
    primary: Node,
    replicas: Vec<Node>,
}

impl TestReplicated {
    /// A primary and `replicas` replicas of it; returns once every link is up.
    pub async fn start(replicas: usize) -> TestReplicated {
        Self::start_with_args(replicas, &[]).await
    }

    /// Like [`Self::start`], with extra arguments for every server.
    pub async fn start_with_args(replicas: usize, args: &[&str]) -> TestReplicated {
        let kind = ServerKind::from_env();
        let root = server::private_dir("repl");
        let extra: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let bin = kind.server_bin();
        let dir = root.join("primary");
        let (process, port) = server::start_on_free_port(&bin, &dir, false, |port| {
            node_args(port, &dir, None, &extra)
        })
        .await;
        let mut group = TestReplicated {
            kind,
            root,
            primary: Node { port, process },
            replicas: Vec::new(),
        };
        for i in 0..replicas {
            let dir = group.root.join(format!("replica-{i}"));
            let primary = group.primary.port;
            let (process, port) = server::start_on_free_port(&bin, &dir, false, |port| {
                node_args(port, &dir, Some(primary), &extra)
            })
            .await;
            group.replicas.push(Node { port, process });
        }
        group.wait_links_up(LINK_TIMEOUT).await;
        group
    }

    fn node(&self, member: Member) -> &Node {
        match member {
            Member::Primary => &self.primary,
            Member::Replica(i) => self.replicas.get(i).unwrap_or_else(|| {
                panic!(
                    "[test-replicated] no replica {i} (there are {})",
                    self.replicas.len()
                )
            }),
        }
    }

    /// `redis://127.0.0.1:PORT` of a member.
    pub fn url_of(&self, member: Member) -> String {
        format!("redis://127.0.0.1:{}", self.node(member).port)
    }

    /// URL of the primary it was started with.
    pub fn primary_url(&self) -> String {
        self.url_of(Member::Primary)
    }

    pub fn port_of(&self, member: Member) -> u16 {
        self.node(member).port
    }

    /// Every replica, in start order.
    pub fn replicas(&self) -> Vec<Member> {
        (0..self.replicas.len()).map(Member::Replica).collect()
    }

    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// A fresh connection to a member (bounded connect and response times).
    pub async fn connection(&self, member: Member) -> redis::aio::MultiplexedConnection {
        server::admin_connection(&server::loopback_client(self.node(member).port))
            .await
            .unwrap_or_else(|e| panic!("[test-replicated] cannot connect to {member:?}: {e}"))
    }

    /// `INFO server` of the primary.
    pub async fn server_info(&self) -> ServerInfo {
        ServerInfo::query(&mut self.connection(Member::Primary).await).await
    }

    /// `INFO replication` of a member, as text.
    pub async fn replication_info(&self, member: Member) -> String {
        redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut self.connection(member).await)
            .await
            .unwrap_or_else(|e| panic!("[test-replicated] INFO replication of {member:?}: {e}"))
    }

    /// Waits (bounded) until every running replica that replicates someone
    /// reports `master_link_status:up` *and* its primary lists it
    /// `state=online` — only then does it count for `WAIT`.
    pub async fn wait_links_up(&self, timeout: Duration) {
        let began = Instant::now();
        for (i, replica) in self.replicas.iter().enumerate() {
            if !replica.process.is_running() {
                continue;
            }
            loop {
                let status = link_status(replica.port).await;
                match &status {
                    Ok(Link::Primary | Link::Online) => break,
                    _ if began.elapsed() >= timeout => panic!(
                        "[test-replicated] replica {i} (port {}) not linked within {timeout:?}: \
                         {status:?}\n{}",
                        replica.port,
                        replica.process.log_tail(2000)
                    ),
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }
    }

    /// `REPLICAOF NO ONE` on a replica: it becomes a primary (the others keep
    /// following the old primary, as after a manual failover that nobody
    /// told them about). Returns once it reports `role:master`.
    pub async fn promote(&self, replica: Member) {
        assert!(
            matches!(replica, Member::Replica(_)),
            "[test-replicated] promote() takes a replica"
        );
        let mut conn = self.connection(replica).await;
        let _: () = redis::cmd("REPLICAOF")
            .arg("NO")
            .arg("ONE")
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("[test-replicated] REPLICAOF NO ONE on {replica:?}: {e}"));
        let role = server::info_field(&self.replication_info(replica).await, "role");
        assert_eq!(
            role.as_deref(),
            Some("master"),
            "{replica:?} after REPLICAOF NO ONE"
        );
    }

    /// `REPLICAOF 127.0.0.1 <port of of>` on `member`, waiting for the link.
    pub async fn replicate(&self, member: Member, of: Member) {
        let mut conn = self.connection(member).await;
        let _: () = redis::cmd("REPLICAOF")
            .arg("127.0.0.1")
            .arg(self.port_of(of))
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("[test-replicated] REPLICAOF on {member:?}: {e}"));
        self.wait_links_up(LINK_TIMEOUT).await;
    }

    /// SIGKILLs the primary it was started with (a crash).
    pub fn kill_primary(&self) {
        self.primary.process.kill();
    }

    /// SIGKILLs any member.
    pub fn kill(&self, member: Member) {
        self.node(member).process.kill();
    }

    /// True while the member's process runs.
    pub fn is_running(&self, member: Member) -> bool {
        self.node(member).process.is_running()
    }
}

impl Drop for TestReplicated {
    fn drop(&mut self) {
        self.primary.process.kill();
        for r in &self.replicas {
            r.process.kill();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Where a replica's link stands.
#[derive(Debug)]
enum Link {
    /// It is a primary itself (promoted).
    Primary,
    /// Linked, and its primary lists it online.
    Online,
    /// Not there yet: why.
    Pending(String),
}

async fn link_status(port: u16) -> redis::RedisResult<Link> {
    let replication = redis::cmd("INFO").arg("replication").to_owned();
    let info: String = server::admin_query(&server::loopback_client(port), &replication).await?;
    let field = |name| server::info_field(&info, name).unwrap_or_default();
    if field("role") == "master" {
        return Ok(Link::Primary);
    }
    if field("master_link_status") != "up" {
        return Ok(Link::Pending(format!(
            "master_link_status:{}",
            field("master_link_status")
        )));
    }
    let Ok(primary) = field("master_port").parse::<u16>() else {
        return Ok(Link::Pending("no master_port".into()));
    };
    let primary_info: String =
        server::admin_query(&server::loopback_client(primary), &replication).await?;
    Ok(match server::replica_state(&primary_info, port) {
        Some(state) if state == "online" => Link::Online,
        state => Link::Pending(format!("primary {primary} lists it as {state:?}")),
    })
}

fn node_args(
    port: u16,
    dir: &std::path::Path,
    primary: Option<u16>,
    extra: &[String],
) -> Vec<String> {
    let mut args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--protected-mode",
        "no",
        "--daemonize",
        "no",
        "--dir",
        &dir.display().to_string(),
        "--save",
        "",
        "--appendonly",
        "no",
        "--repl-diskless-sync-delay",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(primary) = primary {
        args.extend([
            "--replicaof".into(),
            "127.0.0.1".into(),
            primary.to_string(),
        ]);
    }
    args.extend(extra.iter().cloned());
    args
}
