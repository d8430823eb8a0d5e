//! A Redis Cluster of native processes for one test ([`TestCluster`]), with
//! the faults production clusters have: a master killed with SIGKILL and
//! replaced by its replica, a node restarted, a slot resharded while clients
//! write to it.
//!
//! Every node is a `redis-server` (or `valkey-server`, `REDIS_TEST_SERVER`)
//! child process with `--cluster-enabled yes`, in its own directory under one
//! private temp dir, on a free loopback port whose bus port (port + 10000) is
//! free too (see [`super::server`] for port choice and the parent-death
//! signal that keeps a killed test from leaving a cluster behind). No
//! persistence unless [`ClusterOptions::appendonly`]. `cluster-node-timeout`
//! is 1 s so a failover takes about two, and
//! `cluster-replica-validity-factor 0` lets any replica take over however
//! long its link was down, so a failover never depends on timing luck.
//! `repl-diskless-sync-delay 0` makes a replica's first sync immediate (the
//! default waits 5 s for more replicas).
//!
//! The cluster is created by the server's own CLI (`redis-cli --cluster
//! create ... --cluster-replicas N --cluster-yes`; `valkey-cli` for Valkey),
//! which needs at least 3 masters. [`TestCluster::start`] returns once the
//! cluster is *healthy*: every live node reports `cluster_state:ok` with all
//! 16384 slots ok and knows every node, all live nodes agree on who is master
//! of which slots and who replicates whom, and every replica's link to its
//! master is up with the master listing it `state=online` (so it counts for
//! `WAIT`). Every topology change the harness makes ([`kill_master_of`]
//! then [`wait_for_failover`], [`restart_node`], [`move_slot`]) ends in the
//! same check, and the harness keeps the topology it last saw
//! ([`TestCluster::nodes`]).
//!
//! Admin commands (CLUSTER NODES, INFO, CONFIG RESETSTAT) go over fresh
//! connections and appear in `INFO commandstats` (`cluster|nodes`, `info`,
//! `client|setinfo`...): compare counts of the commands under test
//! (`evalsha`, `spublish`, ...), not totals.
//!
//! [`kill_master_of`]: TestCluster::kill_master_of
//! [`wait_for_failover`]: TestCluster::wait_for_failover
//! [`restart_node`]: TestCluster::restart_node
//! [`move_slot`]: TestCluster::move_slot

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    sync::Mutex,
    time::{Duration, Instant},
};

use super::server::{self, ServerInfo, ServerKind, ServerProcess};
use super::tls::TlsMaterial;

/// Number of hash slots.
pub const SLOTS: u16 = 16384;
/// Bound on [`TestCluster::start`] reaching a healthy cluster after create.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on the CLI's `--cluster create`.
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);
/// Keys per MIGRATE in [`TestCluster::move_slot`].
const MIGRATE_BATCH: usize = 100;
/// MIGRATE's own timeout (ms).
const MIGRATE_TIMEOUT_MS: u64 = 5000;
/// Poll interval of the harness's waits.
const POLL: Duration = Duration::from_millis(20);

/// The hash slot of a key like Redis computes it: CRC16 (XMODEM) of the
/// key, or of its hash tag — the part between the first `{` and the next
/// `}` if that is not empty — modulo 16384. So `slot_of("team-1")` ==
/// `slot_of("sbx:{team-1}:rec:s1")`.
pub fn slot_of(key_or_tag: &str) -> u16 {
    let bytes = key_or_tag.as_bytes();
    let hashed = match bytes.iter().position(|&b| b == b'{') {
        Some(open) => match bytes[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    crc16_xmodem(hashed) % SLOTS
}

fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// How to build a [`TestCluster`].
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// At least 3 (the CLI refuses fewer).
    pub masters: usize,
    pub replicas_per_master: usize,
    /// `cluster-node-timeout` (default 1 s).
    pub node_timeout: Duration,
    /// `appendonly yes` (`appendfsync always`) on every node.
    pub appendonly: bool,
    /// TLS only (`--port 0 --tls-port P`, `tls-cluster yes`,
    /// `tls-replication yes`) with fresh certificates
    /// ([`TestCluster::tls_material`]); URLs become `rediss://`.
    pub tls: bool,
    /// Extra arguments for every node.
    pub args: Vec<String>,
}

impl ClusterOptions {
    pub fn new(masters: usize, replicas_per_master: usize) -> ClusterOptions {
        ClusterOptions {
            masters,
            replicas_per_master,
            node_timeout: Duration::from_millis(1000),
            appendonly: false,
            tls: false,
            args: Vec::new(),
        }
    }

    pub fn appendonly(mut self) -> Self {
        self.appendonly = true;
        self
    }

    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.node_timeout = timeout;
        self
    }

    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Master,
    Replica,
}

/// One node as the cluster last described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNode {
    /// The 40-hex-digit node id.
    pub id: String,
    pub port: u16,
    pub role: Role,
    /// For a replica: the id of the master it replicates.
    pub master_id: Option<String>,
    /// Slot ranges (inclusive) a master serves.
    pub slots: Vec<(u16, u16)>,
    /// False once the harness killed its process (until restarted).
    pub alive: bool,
    /// `redis://127.0.0.1:PORT` (or `rediss://`).
    pub url: String,
}

impl ClusterNode {
    pub fn owns(&self, slot: u16) -> bool {
        self.role == Role::Master && self.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
    }

    pub fn slot_count(&self) -> usize {
        self.slots
            .iter()
            .map(|&(a, b)| usize::from(b - a) + 1)
            .sum()
    }
}

/// What [`TestCluster::wait_for_failover`] observed, timed from the kill.
#[derive(Clone, Debug)]
pub struct Failover {
    pub killed: ClusterNode,
    /// The replica that took over (as the healthy cluster describes it).
    pub promoted: ClusterNode,
    /// Kill → the replica reports `role:master` (±20 ms polling).
    pub promoted_after: Duration,
    /// Kill → the cluster is healthy again (every live node
    /// `cluster_state:ok`, all agreeing that the replica owns the slots).
    pub healthy_after: Duration,
}

/// What [`SlotMove::finish`] reports.
#[derive(Clone, Debug)]
pub struct SlotMoveReport {
    pub slot: u16,
    pub from: ClusterNode,
    pub to: ClusterNode,
    /// Keys of the slot on the target afterwards.
    pub keys: usize,
    /// MIGRATE commands sent.
    pub batches: usize,
    pub took: Duration,
}

struct Member {
    port: u16,
    process: ServerProcess,
}

struct Kill {
    node: ClusterNode,
    replicas: Vec<ClusterNode>,
    at: Instant,
}

/// A Redis Cluster for one test. Dropping it SIGKILLs every node and
/// removes their directories, also when the test panics.
pub struct TestCluster {
    kind: ServerKind,
    root: PathBuf,
    opts: ClusterOptions,
    tls: Option<TlsMaterial>,
    members: Vec<Member>,
    topology: Mutex<Vec<ClusterNode>>,
    kills: Mutex<Vec<Kill>>,
    started_in: Duration,
}

impl TestCluster {
    /// `masters` masters (at least 3) with `replicas_per_master` replicas
    /// each, no persistence, 1 s node timeout; returns once healthy.
    pub async fn start(masters: usize, replicas_per_master: usize) -> TestCluster {
        Self::start_with(ClusterOptions::new(masters, replicas_per_master)).await
    }

    pub async fn start_with(opts: ClusterOptions) -> TestCluster {
        assert!(
            opts.masters >= 3,
            "[test-cluster] `--cluster create` needs at least 3 masters, got {}",
            opts.masters
        );
        let began = Instant::now();
        let kind = ServerKind::from_env();
        let root = server::private_dir("cluster");
        let tls = opts.tls.then(|| {
            super::tls::install_crypto_provider();
            TlsMaterial::generate(&root.join("certs"))
        });
        let mut cluster = TestCluster {
            kind,
            root,
            opts,
            tls,
            members: Vec::new(),
            topology: Mutex::new(Vec::new()),
            kills: Mutex::new(Vec::new()),
            started_in: Duration::ZERO,
        };
        // From here on `cluster` owns every process: a panic kills them.
        let total = cluster.opts.masters * (1 + cluster.opts.replicas_per_master);
        for i in 0..total {
            let dir = cluster.root.join(format!("node-{i}"));
            let (process, port) =
                server::start_on_free_port(&kind.server_bin(), &dir, true, |port| {
                    cluster.node_args(port, &dir)
                })
                .await;
            cluster.members.push(Member { port, process });
        }
        cluster.create().await;
        cluster.wait_healthy(HEALTHY_TIMEOUT).await;
        let topology = cluster.nodes();
        for master in topology.iter().filter(|n| n.role == Role::Master) {
            let replicas = topology
                .iter()
                .filter(|n| n.master_id.as_deref() == Some(&master.id))
                .count();
            assert_eq!(
                replicas, cluster.opts.replicas_per_master,
                "[test-cluster] master {} has {replicas} replicas: {topology:#?}",
                master.port
            );
        }
        cluster.started_in = began.elapsed();
        eprintln!(
            "[test-cluster] {} masters x {} replicas of {} on ports {:?}{}: healthy in {} ms",
            cluster.opts.masters,
            cluster.opts.replicas_per_master,
            kind,
            cluster.members.iter().map(|m| m.port).collect::<Vec<_>>(),
            if cluster.tls.is_some() { " (TLS)" } else { "" },
            cluster.started_in.as_millis()
        );
        cluster
    }

    fn node_args(&self, port: u16, dir: &std::path::Path) -> Vec<String> {
        let mut args: Vec<String> = Vec::new();
        let mut push = |items: &[&str]| args.extend(items.iter().map(|s| s.to_string()));
        match &self.tls {
            None => push(&["--port", &port.to_string()]),
            Some(m) => push(&[
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--tls-cluster",
                "yes",
                "--tls-replication",
                "yes",
                "--tls-cert-file",
                &m.server_cert.display().to_string(),
                "--tls-key-file",
                &m.server_key.display().to_string(),
                "--tls-ca-cert-file",
                &m.ca_cert.display().to_string(),
                "--tls-auth-clients",
                "no",
            ]),
        }
        push(&[
            "--bind",
            "127.0.0.1",
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
            "--dir",
            &dir.display().to_string(),
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            &self.opts.node_timeout.as_millis().to_string(),
            "--cluster-replica-validity-factor",
            "0",
            "--repl-diskless-sync-delay",
            "0",
            "--save",
            "",
        ]);
        if self.opts.appendonly {
            push(&["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            push(&["--appendonly", "no"]);
        }
        args.extend(self.opts.args.iter().cloned());
        args
    }

    /// `<cli> --cluster create ... --cluster-replicas N --cluster-yes`.
    async fn create(&self) {
        let cli = self.kind.cli_bin();
        let mut cmd = tokio::process::Command::new(&cli);
        cmd.arg("--cluster").arg("create");
        for m in &self.members {
            cmd.arg(format!("127.0.0.1:{}", m.port));
        }
        cmd.arg("--cluster-replicas")
            .arg(self.opts.replicas_per_master.to_string())
            .arg("--cluster-yes");
        if let Some(t) = &self.tls {
            cmd.arg("--tls")
                .arg("--cacert")
                .arg(&t.ca_cert)
                .arg("--cert")
                .arg(&t.client_cert)
                .arg("--key")
                .arg(&t.client_key);
        }
        cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
        let out = tokio::time::timeout(CREATE_TIMEOUT, cmd.output())
            .await
            .unwrap_or_else(|_| {
                panic!("[test-cluster] `{cli} --cluster create` did not finish in {CREATE_TIMEOUT:?}")
            })
            .unwrap_or_else(|e| {
                panic!("[test-cluster] cannot run `{cli}` ({e}): apt-get install redis-tools / valkey-tools")
            });
        if !out.status.success() {
            panic!(
                "[test-cluster] `{cli} --cluster create` failed ({}):\n{}{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.logs()
            );
        }
    }

    // ----- topology -------------------------------------------------------

    /// Every node as last seen healthy (dead ones with `alive: false`),
    /// in start order.
    pub fn nodes(&self) -> Vec<ClusterNode> {
        self.topology.lock().unwrap().clone()
    }

    /// Live masters, in start order.
    pub fn masters(&self) -> Vec<ClusterNode> {
        self.nodes()
            .into_iter()
            .filter(|n| n.alive && n.role == Role::Master)
            .collect()
    }

    /// Live replicas of the master `master_id`.
    pub fn replicas_of(&self, master_id: &str) -> Vec<ClusterNode> {
        self.nodes()
            .into_iter()
            .filter(|n| n.alive && n.master_id.as_deref() == Some(master_id))
            .collect()
    }

    /// The node on `port`.
    pub fn node(&self, port: u16) -> ClusterNode {
        self.nodes()
            .into_iter()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("[test-cluster] no node on port {port}"))
    }

    /// URLs of the live masters: the seed list for a cluster client.
    pub fn seed_urls(&self) -> Vec<String> {
        self.masters().into_iter().map(|n| n.url).collect()
    }

    /// URLs of every live node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes()
            .into_iter()
            .filter(|n| n.alive)
            .map(|n| n.url)
            .collect()
    }

    /// The live master serving `slot`.
    pub fn master_for_slot(&self, slot: u16) -> ClusterNode {
        self.masters()
            .into_iter()
            .find(|n| n.owns(slot))
            .unwrap_or_else(|| panic!("[test-cluster] no live master owns slot {slot}"))
    }

    /// [`slot_of`], as a method for convenience.
    pub fn slot_of(key_or_tag: &str) -> u16 {
        slot_of(key_or_tag)
    }

    /// `per_master` team ids (`team-<n>`, smallest n first) for every live
    /// master, so that the `{team}` hash tags of the result cover every
    /// master. In the order found.
    pub fn teams_on_every_master(&self, per_master: usize) -> Vec<String> {
        let masters = self.masters();
        let mut left: BTreeMap<String, usize> =
            masters.iter().map(|m| (m.id.clone(), per_master)).collect();
        let mut teams = Vec::new();
        for n in 0..1_000_000u32 {
            if left.values().all(|&l| l == 0) {
                return teams;
            }
            let team = format!("team-{n}");
            let slot = slot_of(&team);
            let owner = masters
                .iter()
                .find(|m| m.owns(slot))
                .expect("every slot is owned");
            let l = left.get_mut(&owner.id).expect("a live master");
            if *l > 0 {
                *l -= 1;
                teams.push(team);
            }
        }
        panic!("[test-cluster] no team ids found for every master");
    }

    /// Which server runs (from the environment).
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// `INFO server` of the first live node.
    pub async fn server_info(&self) -> ServerInfo {
        let port = self.live_ports()[0];
        let mut conn = server::admin_connection(&self.client_for(port))
            .await
            .unwrap_or_else(|e| panic!("[test-cluster] cannot connect to {port}: {e}"));
        ServerInfo::query(&mut conn).await
    }

    /// The certificates of a TLS cluster ([`ClusterOptions::tls`]).
    pub fn tls_material(&self) -> Option<&TlsMaterial> {
        self.tls.as_ref()
    }

    /// How long [`Self::start`] took (processes, create, healthy).
    pub fn start_time(&self) -> Duration {
        self.started_in
    }

    /// A redis-rs cluster client over the seed URLs (TLS with the private CA
    /// for a TLS cluster); connect timeout 2 s, response timeout 5 s.
    pub fn cluster_client(&self) -> redis::cluster::ClusterClient {
        let mut builder = redis::cluster::ClusterClient::builder(self.seed_urls())
            .connection_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(5));
        if let Some(t) = &self.tls {
            builder = builder.certs(t.certificates(true));
        }
        builder
            .build()
            .unwrap_or_else(|e| panic!("[test-cluster] cluster client: {e}"))
    }

    /// A connected cluster connection ([`Self::cluster_client`]).
    pub async fn cluster_connection(&self) -> redis::cluster_async::ClusterConnection {
        self.cluster_client()
            .get_async_connection()
            .await
            .unwrap_or_else(|e| panic!("[test-cluster] cluster connection: {e}"))
    }

    /// A plain (non-cluster) connection to one node.
    pub async fn node_connection(&self, port: u16) -> redis::aio::MultiplexedConnection {
        server::admin_connection(&self.client_for(port))
            .await
            .unwrap_or_else(|e| panic!("[test-cluster] cannot connect to node {port}: {e}"))
    }

    fn url_for(&self, port: u16) -> String {
        match self.tls {
            Some(_) => format!("rediss://127.0.0.1:{port}"),
            None => format!("redis://127.0.0.1:{port}"),
        }
    }

    fn client_for(&self, port: u16) -> redis::Client {
        match &self.tls {
            Some(t) => t.client(&self.url_for(port), true),
            None => server::loopback_client(port),
        }
    }

    async fn query<T: redis::FromRedisValue>(
        &self,
        port: u16,
        cmd: &redis::Cmd,
    ) -> redis::RedisResult<T> {
        server::admin_query(&self.client_for(port), cmd).await
    }

    /// Like [`Self::query`], panicking with the command and node on error.
    async fn must<T: redis::FromRedisValue>(&self, port: u16, cmd: &redis::Cmd) -> T {
        self.query(port, cmd).await.unwrap_or_else(|e| {
            panic!(
                "[test-cluster] `{}` on node {port} failed: {e}",
                String::from_utf8_lossy(&cmd.get_packed_command()).replace("\r\n", " ")
            )
        })
    }

    fn member(&self, port: u16) -> &Member {
        self.members
            .iter()
            .find(|m| m.port == port)
            .unwrap_or_else(|| panic!("[test-cluster] no node on port {port}"))
    }

    fn live_ports(&self) -> Vec<u16> {
        self.members
            .iter()
            .filter(|m| m.process.is_running())
            .map(|m| m.port)
            .collect()
    }

    /// Pids of the running node processes.
    pub fn pids(&self) -> Vec<u32> {
        self.members
            .iter()
            .filter_map(|m| m.process.pid())
            .collect()
    }

    /// The last lines of every node's log (for failure messages).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for m in &self.members {
            out.push_str(&format!(
                "--- node {} (pid {:?}) ---\n{}\n",
                m.port,
                m.process.pid(),
                m.process.log_tail(1500)
            ));
        }
        out
    }

    // ----- health ---------------------------------------------------------

    /// One look at the cluster: the topology if it is healthy (see the
    /// module docs), else why not.
    async fn probe(&self) -> Result<Vec<ClusterNode>, String> {
        let live = self.live_ports();
        if live.is_empty() {
            return Err("no live node".into());
        }
        let mut agreed: Option<(u16, Vec<ClusterNode>)> = None;
        for &port in &live {
            let info: String = self
                .query(port, redis::cmd("CLUSTER").arg("INFO"))
                .await
                .map_err(|e| format!("node {port}: CLUSTER INFO: {e}"))?;
            let field = |name| server::info_field(&info, name).unwrap_or_default();
            if field("cluster_state") != "ok" {
                return Err(format!(
                    "node {port}: cluster_state:{}",
                    field("cluster_state")
                ));
            }
            if field("cluster_slots_ok") != SLOTS.to_string() {
                return Err(format!(
                    "node {port}: cluster_slots_ok:{}",
                    field("cluster_slots_ok")
                ));
            }
            if field("cluster_known_nodes") != self.members.len().to_string() {
                return Err(format!(
                    "node {port}: cluster_known_nodes:{} of {}",
                    field("cluster_known_nodes"),
                    self.members.len()
                ));
            }
            let text: String = self
                .query(port, redis::cmd("CLUSTER").arg("NODES"))
                .await
                .map_err(|e| format!("node {port}: CLUSTER NODES: {e}"))?;
            let view = parse_cluster_nodes(&text, |p| self.url_for(p))
                .map_err(|e| format!("node {port}: {e}"))?;
            match view.iter().find(|v| v.myself) {
                Some(me) if me.node.port == port => {}
                _ => {
                    return Err(format!(
                        "node {port}: its CLUSTER NODES has no `myself` entry"
                    ));
                }
            }
            // Only live nodes must agree: the dead may be described stale.
            let mut seen: Vec<ClusterNode> = view
                .into_iter()
                .map(|v| v.node)
                .filter(|n| live.contains(&n.port))
                .collect();
            seen.sort_by_key(|n| n.port);
            if seen.len() != live.len() {
                return Err(format!(
                    "node {port} knows {} of the {} live nodes",
                    seen.len(),
                    live.len()
                ));
            }
            match &agreed {
                None => agreed = Some((port, seen)),
                Some((first, view)) if *view != seen => {
                    return Err(format!(
                        "nodes {first} and {port} disagree:\n{view:?}\n{seen:?}"
                    ));
                }
                Some(_) => {}
            }
        }
        let (_, view) = agreed.expect("at least one live node");
        let mut covered: BTreeSet<u16> = BTreeSet::new();
        for n in view.iter().filter(|n| n.role == Role::Master) {
            for &(a, b) in &n.slots {
                covered.extend(a..=b);
            }
        }
        if covered.len() != usize::from(SLOTS) {
            return Err(format!(
                "live masters serve {} of {SLOTS} slots",
                covered.len()
            ));
        }
        for replica in view.iter().filter(|n| n.role == Role::Replica) {
            let master = replica
                .master_id
                .as_ref()
                .and_then(|id| view.iter().find(|n| &n.id == id))
                .ok_or_else(|| format!("replica {} has no live master", replica.port))?;
            let info: String = self
                .query(replica.port, redis::cmd("INFO").arg("replication"))
                .await
                .map_err(|e| format!("node {}: INFO replication: {e}", replica.port))?;
            let field = |name| server::info_field(&info, name).unwrap_or_default();
            if field("master_link_status") != "up"
                || field("master_port") != master.port.to_string()
            {
                return Err(format!(
                    "replica {}: master_link_status:{} master_port:{} (master is {})",
                    replica.port,
                    field("master_link_status"),
                    field("master_port"),
                    master.port
                ));
            }
            // Only an `online` replica counts for WAIT (and is fully synced).
            let master_info: String = self
                .query(master.port, redis::cmd("INFO").arg("replication"))
                .await
                .map_err(|e| format!("node {}: INFO replication: {e}", master.port))?;
            match server::replica_state(&master_info, replica.port) {
                Some(state) if state == "online" => {}
                state => {
                    return Err(format!(
                        "master {} lists replica {} as {state:?}",
                        master.port, replica.port
                    ));
                }
            }
        }
        // The whole picture: live nodes as agreed, dead ones as last known.
        let before = self.nodes();
        let topology = self
            .members
            .iter()
            .filter_map(|m| {
                view.iter().find(|n| n.port == m.port).cloned().or_else(|| {
                    before
                        .iter()
                        .find(|n| n.port == m.port)
                        .map(|n| ClusterNode {
                            alive: false,
                            ..n.clone()
                        })
                })
            })
            .collect();
        Ok(topology)
    }

    /// Waits (bounded) until the cluster is healthy and records its
    /// topology; returns how long it took. Panics with the reason and
    /// every node's log on timeout.
    pub async fn wait_healthy(&self, timeout: Duration) -> Duration {
        let began = Instant::now();
        loop {
            match self.probe().await {
                Ok(topology) => {
                    *self.topology.lock().unwrap() = topology;
                    return began.elapsed();
                }
                Err(why) if began.elapsed() >= timeout => panic!(
                    "[test-cluster] not healthy within {timeout:?}: {why}\n{}",
                    self.logs()
                ),
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    // ----- faults ---------------------------------------------------------

    /// SIGKILLs the live master serving `slot` (a crash: no shutdown, no
    /// failover handshake) and returns it as it was. Its replicas take over
    /// after `cluster-node-timeout`: [`Self::wait_for_failover`].
    pub async fn kill_master_of(&self, slot: u16) -> ClusterNode {
        let master = self.master_for_slot(slot);
        let replicas = self.replicas_of(&master.id);
        self.member(master.port).process.kill();
        let at = Instant::now();
        self.mark_dead(master.port);
        self.kills.lock().unwrap().push(Kill {
            node: master.clone(),
            replicas,
            at,
        });
        master
    }

    /// SIGKILLs any node (a replica, say); returns it as it was.
    pub async fn kill_node(&self, port: u16) -> ClusterNode {
        let node = self.node(port);
        self.member(port).process.kill();
        self.mark_dead(port);
        node
    }

    fn mark_dead(&self, port: u16) {
        for n in self.topology.lock().unwrap().iter_mut() {
            if n.port == port {
                n.alive = false;
            }
        }
    }

    /// After [`Self::kill_master_of`]`(slot)`: waits (bounded by `timeout`)
    /// until one of the killed master's replicas is master and the cluster
    /// is healthy with that replica serving `slot`. Timings are from the kill.
    pub async fn wait_for_failover(&self, slot: u16, timeout: Duration) -> Failover {
        let (killed, replicas, at) = {
            let kills = self.kills.lock().unwrap();
            let kill = kills
                .iter()
                .rev()
                .find(|k| k.node.owns(slot))
                .unwrap_or_else(|| {
                    panic!("[test-cluster] wait_for_failover({slot}): no master of it was killed")
                });
            (kill.node.clone(), kill.replicas.clone(), kill.at)
        };
        assert!(
            !replicas.is_empty(),
            "[test-cluster] master {} had no replica: nothing can fail over",
            killed.port
        );
        let began = Instant::now();
        let mut promoted: Option<(u16, Duration)> = None;
        let mut last = String::from("no replica is master yet");
        loop {
            if promoted.is_none() {
                for r in &replicas {
                    let info: redis::RedisResult<String> = self
                        .query(r.port, redis::cmd("INFO").arg("replication"))
                        .await;
                    if let Ok(info) = info
                        && server::info_field(&info, "role").as_deref() == Some("master")
                    {
                        promoted = Some((r.port, at.elapsed()));
                        break;
                    }
                }
            }
            if let Some((port, promoted_after)) = promoted {
                match self.probe().await {
                    Ok(topology) => {
                        let owner = topology.iter().find(|n| n.alive && n.owns(slot)).cloned();
                        match owner {
                            Some(owner) if owner.port == port => {
                                *self.topology.lock().unwrap() = topology;
                                return Failover {
                                    killed,
                                    promoted: owner,
                                    promoted_after,
                                    healthy_after: at.elapsed(),
                                };
                            }
                            other => {
                                last = format!(
                                    "slot {slot} is served by {other:?}, not the promoted {port}"
                                )
                            }
                        }
                    }
                    Err(why) => last = why,
                }
            }
            if began.elapsed() >= timeout {
                panic!(
                    "[test-cluster] no failover of slot {slot} within {timeout:?} of asking \
                     ({:?} after the kill of {}): {last}\n{}",
                    at.elapsed(),
                    killed.port,
                    self.logs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Restarts the node on `port` (a clean SIGTERM first if it runs) with
    /// the same arguments and directory — its `nodes.conf` keeps its
    /// identity, so a former master comes back as a replica of the node that
    /// replaced it. Without AOF it comes back empty. Returns once the
    /// cluster is healthy again (bounded by `timeout`), with the time taken.
    pub async fn restart_node(&self, port: u16, timeout: Duration) -> Duration {
        let began = Instant::now();
        let member = self.member(port);
        member.process.terminate(Duration::from_secs(10)).await;
        member
            .process
            .respawn()
            .unwrap_or_else(|e| panic!("[test-cluster] restart of node {port}: {e}"));
        member
            .process
            .wait_ready(server::START_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("[test-cluster] restart of node {port}: {e}"));
        let left = timeout.saturating_sub(began.elapsed());
        self.wait_healthy(left).await;
        began.elapsed()
    }

    // ----- resharding -----------------------------------------------------

    /// Moves `slot` with all its keys to the master `to_master` (a node id)
    /// while clients keep using it: IMPORTING / MIGRATING, MIGRATE ... KEYS
    /// in batches of 100, then SETSLOT NODE on every master. See
    /// [`Self::begin_slot_move`] to interleave a test's own steps.
    pub async fn move_slot(&self, slot: u16, to_master: &str) -> SlotMoveReport {
        let mut slot_move = self.begin_slot_move(slot, to_master).await;
        while slot_move.migrate_batch(MIGRATE_BATCH).await > 0 {}
        slot_move.finish().await
    }

    /// Starts moving `slot` to `to_master`: `CLUSTER SETSLOT slot IMPORTING
    /// <source>` on the target, then `MIGRATING <target>` on the source.
    /// From here clients asking the source for a key it no longer has are
    /// sent to the target with `-ASK`.
    pub async fn begin_slot_move(&self, slot: u16, to_master: &str) -> SlotMove<'_> {
        let from = self.master_for_slot(slot);
        let to = self
            .masters()
            .into_iter()
            .find(|n| n.id == to_master)
            .unwrap_or_else(|| panic!("[test-cluster] {to_master} is not a live master"));
        assert_ne!(
            from.id, to.id,
            "[test-cluster] slot {slot} is already on {}",
            to.port
        );
        let _: () = self
            .must(
                to.port,
                redis::cmd("CLUSTER")
                    .arg("SETSLOT")
                    .arg(slot)
                    .arg("IMPORTING")
                    .arg(&from.id),
            )
            .await;
        let _: () = self
            .must(
                from.port,
                redis::cmd("CLUSTER")
                    .arg("SETSLOT")
                    .arg(slot)
                    .arg("MIGRATING")
                    .arg(&to.id),
            )
            .await;
        SlotMove {
            cluster: self,
            slot,
            from,
            to,
            batches: 0,
            began: Instant::now(),
        }
    }

    // ----- statistics -----------------------------------------------------

    /// `INFO commandstats` calls per command, summed over every live node;
    /// names lower-case as Redis prints them (`evalsha`, `spublish`,
    /// `cluster|nodes`).
    pub async fn commandstats_all(&self) -> BTreeMap<String, u64> {
        let mut total = BTreeMap::new();
        for per_node in self.commandstats_per_node().await.into_values() {
            for (name, calls) in per_node {
                *total.entry(name).or_insert(0) += calls;
            }
        }
        total
    }

    /// `INFO commandstats` calls per command, per live node (by port).
    pub async fn commandstats_per_node(&self) -> BTreeMap<u16, BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        for port in self.live_ports() {
            let info: String = self
                .must(port, redis::cmd("INFO").arg("commandstats"))
                .await;
            out.insert(port, parse_commandstats(&info));
        }
        out
    }

    /// `CONFIG RESETSTAT` on every live node.
    pub async fn reset_stats(&self) {
        for port in self.live_ports() {
            let _: () = self.must(port, redis::cmd("CONFIG").arg("RESETSTAT")).await;
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for m in &self.members {
            m.process.kill();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A slot move in progress ([`TestCluster::begin_slot_move`]). Migrate keys
/// with [`Self::migrate_batch`] / [`Self::migrate_keys`], in any order and
/// interleaved with the test's own steps; [`Self::finish`] moves the rest
/// and hands the slot over.
pub struct SlotMove<'a> {
    cluster: &'a TestCluster,
    slot: u16,
    from: ClusterNode,
    to: ClusterNode,
    batches: usize,
    began: Instant,
}

impl SlotMove<'_> {
    pub fn from(&self) -> &ClusterNode {
        &self.from
    }

    pub fn to(&self) -> &ClusterNode {
        &self.to
    }

    /// Migrates up to `max_keys` keys still on the source (`CLUSTER
    /// GETKEYSINSLOT`, one `MIGRATE ... KEYS`); returns how many were
    /// chosen, 0 when the source holds none of the slot any more.
    pub async fn migrate_batch(&mut self, max_keys: usize) -> usize {
        let keys: Vec<String> = self
            .cluster
            .must(
                self.from.port,
                redis::cmd("CLUSTER")
                    .arg("GETKEYSINSLOT")
                    .arg(self.slot)
                    .arg(max_keys),
            )
            .await;
        self.migrate_keys(&keys).await;
        keys.len()
    }

    /// Migrates these keys (those the source still has) in one `MIGRATE`.
    pub async fn migrate_keys(&mut self, keys: &[String]) {
        if keys.is_empty() {
            return;
        }
        for key in keys {
            assert_eq!(
                slot_of(key),
                self.slot,
                "[test-cluster] key {key} is not in slot {}",
                self.slot
            );
        }
        let mut cmd = redis::cmd("MIGRATE");
        cmd.arg("127.0.0.1")
            .arg(self.to.port)
            .arg("")
            .arg(0)
            .arg(MIGRATE_TIMEOUT_MS)
            .arg("KEYS")
            .arg(keys);
        // "OK", or "NOKEY" when none of them is on the source any more.
        let _: String = self.cluster.must(self.from.port, &cmd).await;
        self.batches += 1;
    }

    /// Migrates what is left, then `CLUSTER SETSLOT slot NODE <target>` on
    /// the target, the source and every other live master (the order
    /// redis-cli uses), and waits until the cluster is healthy with the
    /// target serving the slot.
    pub async fn finish(mut self) -> SlotMoveReport {
        while self.migrate_batch(MIGRATE_BATCH).await > 0 {}
        let c = self.cluster;
        let mut order = vec![self.to.port, self.from.port];
        order.extend(
            c.masters()
                .iter()
                .map(|m| m.port)
                .filter(|p| *p != self.to.port && *p != self.from.port),
        );
        for port in order {
            let _: () = c
                .must(
                    port,
                    redis::cmd("CLUSTER")
                        .arg("SETSLOT")
                        .arg(self.slot)
                        .arg("NODE")
                        .arg(&self.to.id),
                )
                .await;
        }
        let began = Instant::now();
        loop {
            c.wait_healthy(HEALTHY_TIMEOUT).await;
            if c.master_for_slot(self.slot).id == self.to.id {
                break;
            }
            assert!(
                began.elapsed() < HEALTHY_TIMEOUT,
                "[test-cluster] slot {} never settled on {}",
                self.slot,
                self.to.port
            );
            tokio::time::sleep(POLL).await;
        }
        let left: u64 = c
            .must(
                self.from.port,
                redis::cmd("CLUSTER").arg("COUNTKEYSINSLOT").arg(self.slot),
            )
            .await;
        assert_eq!(
            left, 0,
            "[test-cluster] keys of slot {} left on the source",
            self.slot
        );
        let keys: u64 = c
            .must(
                self.to.port,
                redis::cmd("CLUSTER").arg("COUNTKEYSINSLOT").arg(self.slot),
            )
            .await;
        SlotMoveReport {
            slot: self.slot,
            from: c.node(self.from.port),
            to: c.node(self.to.port),
            keys: keys as usize,
            batches: self.batches,
            took: self.began.elapsed(),
        }
    }
}

/// One line of `CLUSTER NODES`, as the node that printed it sees it.
struct ViewEntry {
    node: ClusterNode,
    myself: bool,
}

/// Parses `CLUSTER NODES`: `<id> <ip:port@cport[,hostname]> <flags>
/// <master> <ping-sent> <pong-recv> <config-epoch> <link-state> <slot>...`
/// (slots in migration, `[slot->-id]`, are left out). `alive` is true.
fn parse_cluster_nodes(
    text: &str,
    url_for: impl Fn(u16) -> String,
) -> Result<Vec<ViewEntry>, String> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 {
            return Err(format!("short CLUSTER NODES line {line:?}"));
        }
        let addr = fields[1].split(['@', ',']).next().unwrap_or_default();
        let port: u16 = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("no port in {line:?}"))?;
        let flags: Vec<&str> = fields[2].split(',').collect();
        let role = if flags.contains(&"master") {
            Role::Master
        } else if flags.contains(&"slave") || flags.contains(&"replica") {
            Role::Replica
        } else {
            return Err(format!("neither master nor replica: {line:?}"));
        };
        let master_id = (fields[3] != "-").then(|| fields[3].to_string());
        let mut slots = Vec::new();
        for s in &fields[8..] {
            if s.starts_with('[') {
                continue;
            }
            let range = match s.split_once('-') {
                Some((a, b)) => (a.parse(), b.parse()),
                None => (s.parse(), s.parse()),
            };
            match range {
                (Ok(a), Ok(b)) => slots.push((a, b)),
                _ => return Err(format!("bad slot {s:?} in {line:?}")),
            }
        }
        slots.sort_unstable();
        out.push(ViewEntry {
            node: ClusterNode {
                id: fields[0].to_string(),
                port,
                role,
                master_id: if role == Role::Replica {
                    master_id
                } else {
                    None
                },
                slots,
                alive: true,
                url: url_for(port),
            },
            myself: flags.contains(&"myself"),
        });
    }
    Ok(out)
}

/// `cmdstat_<name>:calls=N,usec=...` lines -> name -> N.
pub fn parse_commandstats(info: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (name, value) in server::info_fields(info) {
        let Some(cmd) = name.strip_prefix("cmdstat_") else {
            continue;
        };
        let calls = value
            .split(',')
            .find_map(|kv| kv.strip_prefix("calls="))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        *out.entry(cmd.to_ascii_lowercase()).or_insert(0) += calls;
    }
    out
}
