//! [`RedisCluster`]: a Redis Cluster on loopback ports, with replicas and
//! fault proxies when asked, and the moves a fault test needs: a master
//! failed over to its replica, a slot migrated between masters.

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::server::{RedisServer, RedisServerOptions};
use crate::{FaultMode, FaultProxy, TestkitError};

mod admin;

use admin::NodeLine;

/// How long a node may miss pings before the others mark it failing
/// (`cluster-node-timeout`) in a cluster with replicas: short, so that a
/// failover takes seconds, and far above a loaded machine's hiccups.
const REPLICATED_NODE_TIMEOUT_MS: u64 = 1500;

/// A Redis Cluster of masters, each with its replicas, all slots assigned,
/// ready when every node reports `cluster_state:ok` and every replica is in
/// sync. Dropping it kills every node.
///
/// Built with [`start_proxied`](Self::start_proxied), each node sits behind
/// a [`FaultProxy`] and announces the proxy's port
/// (`cluster-announce-port`), so every connection a Cluster client opens,
/// to any node, crosses a proxy and feels its fault; the nodes' own bus
/// traffic does not.
///
/// ```no_run
/// # fn main() -> Result<(), levee_testkit::TestkitError> {
/// let mut cluster = levee_testkit::RedisCluster::start_with_replicas(3, 1)?;
/// let master = cluster.master_of(b"user:42")?;
/// let promoted = cluster.fail_over(master)?; // kills it, waits for its replica
/// assert_ne!(promoted, master);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    /// Node ids, by index (they live in `nodes.conf`, so a restart keeps them).
    ids: Vec<String>,
    /// With `start_proxied`: `proxies[i]` fronts `nodes[i]`.
    proxies: Vec<FaultProxy>,
}

impl RedisCluster {
    /// Starts `masters` nodes (at least 3), no replicas, and forms a cluster.
    pub fn start(masters: usize) -> Result<RedisCluster, TestkitError> {
        Self::build(masters, 0, &[])
    }

    /// Starts `masters` masters (at least 3) with `replicas` replicas each
    /// (`--cluster-replicas`), forms a cluster, and waits until every
    /// replica is in sync. The node timeout is 1.5 s, so a killed master's
    /// replica takes over within a few seconds.
    pub fn start_with_replicas(
        masters: usize,
        replicas: usize,
    ) -> Result<RedisCluster, TestkitError> {
        Self::build(masters, replicas, &[])
    }

    /// As [`start_with_replicas`](Self::start_with_replicas), with every
    /// node behind a [`FaultProxy`] (in [`FaultMode::Pass`]) whose port it
    /// announces: clients given [`urls`](Self::urls) reach every node only
    /// through the proxies. Call it inside a Tokio runtime (the proxies run
    /// on it); the blocking start runs on a blocking thread.
    pub async fn start_proxied(
        masters: usize,
        replicas: usize,
    ) -> Result<RedisCluster, TestkitError> {
        let count = masters.max(3) * (1 + replicas);
        let mut ports = Vec::with_capacity(count);
        let mut proxies = Vec::with_capacity(count);
        for _ in 0..count {
            let port = free_cluster_port()?;
            proxies.push(FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], port))).await?);
            ports.push(port);
        }
        let announce: Vec<(u16, u16)> = ports
            .iter()
            .zip(&proxies)
            .map(|(p, proxy)| (*p, proxy.addr().port()))
            .collect();
        let mut cluster =
            tokio::task::spawn_blocking(move || Self::build(masters, replicas, &announce))
                .await
                .map_err(|e| {
                    TestkitError::NotReady(format!("starting the cluster: {e}"), String::new())
                })??;
        cluster.proxies = proxies;
        Ok(cluster)
    }

    /// Starts the nodes; with `announce` (real port, announced port) per
    /// node, each announces the proxy's port.
    fn build(
        masters: usize,
        replicas: usize,
        announce: &[(u16, u16)],
    ) -> Result<RedisCluster, TestkitError> {
        let count = masters.max(3) * (1 + replicas);
        let mut nodes = Vec::with_capacity(count);
        for i in 0..count {
            let dir = tempfile::tempdir().map_err(TestkitError::io("creating a temp dir"))?;
            let mut opts = RedisServerOptions::cluster_node();
            if replicas > 0 {
                opts = opts.args([
                    "--cluster-node-timeout".to_string(),
                    REPLICATED_NODE_TIMEOUT_MS.to_string(),
                    // Any replica may take over, however long it was cut off.
                    "--cluster-replica-validity-factor".to_string(),
                    "0".to_string(),
                ]);
            }
            let port = match announce.get(i) {
                Some(&(real, announced)) => {
                    opts = opts.args(
                        [
                            "--cluster-announce-ip",
                            "127.0.0.1",
                            "--cluster-announce-port",
                            &announced.to_string(),
                            "--cluster-announce-bus-port",
                            &(real + 10_000).to_string(),
                        ]
                        .map(String::from),
                    );
                    real
                }
                None => free_cluster_port()?,
            };
            nodes.push(RedisServer::start_in(opts, dir, port)?);
        }
        create(&nodes, replicas)?;
        let ids = nodes
            .iter()
            .map(|n| admin::query::<String>(n, &["CLUSTER", "MYID"]))
            .collect::<Result<_, _>>()?;
        let cluster = RedisCluster {
            nodes,
            ids,
            proxies: Vec::new(),
        };
        cluster.wait_ok()?;
        if replicas > 0 {
            cluster.wait_replicas_in_sync()?;
        }
        Ok(cluster)
    }

    /// The URLs clients should use: the proxies' with
    /// [`start_proxied`](Self::start_proxied), else the nodes'.
    pub fn urls(&self) -> Vec<String> {
        if self.proxies.is_empty() {
            self.nodes.iter().map(RedisServer::url).collect()
        } else {
            self.proxies.iter().map(FaultProxy::url).collect()
        }
    }

    /// The nodes themselves (to pause or kill one).
    pub fn nodes_mut(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }

    /// The proxies, `proxies()[i]` in front of node `i` (empty unless
    /// started with [`start_proxied`](Self::start_proxied)).
    pub fn proxies(&self) -> &[FaultProxy] {
        &self.proxies
    }

    /// Switches every proxy to `mode`.
    pub fn set_fault(&self, mode: FaultMode) {
        for p in &self.proxies {
            p.set_mode(mode);
        }
    }

    /// Node `i`'s cluster id.
    pub fn node_id(&self, i: usize) -> &str {
        &self.ids[i]
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`).
    pub fn slot_of(&self, key: &[u8]) -> Result<u16, TestkitError> {
        let node = self.any_live()?;
        admin::keyslot(node, key)
    }

    /// The index of the master that serves `slot` now.
    pub fn owner_of_slot(&self, slot: u16) -> Result<usize, TestkitError> {
        let lines = self.topology()?;
        lines
            .iter()
            .find(|l| l.is_master() && !l.failed() && l.serves(slot))
            .and_then(|l| self.index_of(&l.id))
            .ok_or_else(|| admin::error("finding the master of a slot", format!("slot {slot}")))
    }

    /// The index of the master that serves `key` now.
    pub fn master_of(&self, key: &[u8]) -> Result<usize, TestkitError> {
        self.owner_of_slot(self.slot_of(key)?)
    }

    /// Indexes of the live masters.
    pub fn masters(&self) -> Result<Vec<usize>, TestkitError> {
        Ok(self
            .topology()?
            .iter()
            .filter(|l| l.is_master() && !l.failed())
            .filter_map(|l| self.index_of(&l.id))
            .collect())
    }

    /// A live master other than `m` (to move a slot to, say).
    pub fn master_other_than(&self, m: usize) -> Result<usize, TestkitError> {
        self.masters()?
            .into_iter()
            .find(|&other| other != m)
            .ok_or_else(|| TestkitError::Command {
                what: "CLUSTER NODES (a master to move to)".into(),
                detail: format!("no live master other than node {m}"),
            })
    }

    /// Fails master `i` over: kills it, then waits (up to 30 s) until one
    /// of its replicas is a master and every live node reports
    /// `cluster_state:ok`. Returns the promoted replica's index.
    pub fn fail_over(&mut self, i: usize) -> Result<usize, TestkitError> {
        let lines = self.topology()?;
        let replicas: Vec<usize> = lines
            .iter()
            .filter(|l| l.master_id.as_deref() == Some(self.ids[i].as_str()))
            .filter_map(|l| self.index_of(&l.id))
            .collect();
        if replicas.is_empty() {
            return Err(admin::error(
                "failing a master over",
                format!("node {i} has no replica (start with start_with_replicas)"),
            ));
        }
        self.nodes[i].kill();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let promoted = replicas.iter().copied().find(|&r| {
                admin::query::<Vec<redis::Value>>(&self.nodes[r], &["ROLE"])
                    .ok()
                    .and_then(|role| role.into_iter().next())
                    .is_some_and(|v| matches!(v, redis::Value::BulkString(b) if b == b"master"))
            });
            if let Some(r) = promoted
                && self.live_nodes_ok()
            {
                return Ok(r);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(TestkitError::NotReady(
            format!("no replica of node {i} took over within 30 s"),
            self.nodes[replicas[0]]
                .dir()
                .join("redis.log")
                .display()
                .to_string(),
        ))
    }

    /// Moves `slot` to master `to` in one go:
    /// [`begin_slot_migration`](Self::begin_slot_migration),
    /// [`move_slot_keys`](Self::move_slot_keys),
    /// [`finish_slot_migration`](Self::finish_slot_migration).
    pub fn migrate_slot(&self, slot: u16, to: usize) -> Result<(), TestkitError> {
        let from = self.begin_slot_migration(slot, to)?;
        self.move_slot_keys(slot, from, to)?;
        self.finish_slot_migration(slot, to)
    }

    /// Marks `slot` importing on `to` and migrating on its owner (from now
    /// on the owner answers `ASK` for keys it no longer holds). Returns the
    /// owner's index.
    pub fn begin_slot_migration(&self, slot: u16, to: usize) -> Result<usize, TestkitError> {
        let from = self.owner_of_slot(slot)?;
        let s = slot.to_string();
        admin::query::<()>(
            &self.nodes[to],
            &["CLUSTER", "SETSLOT", &s, "IMPORTING", &self.ids[from]],
        )?;
        admin::query::<()>(
            &self.nodes[from],
            &["CLUSTER", "SETSLOT", &s, "MIGRATING", &self.ids[to]],
        )?;
        Ok(from)
    }

    /// Moves every key of `slot` from `from` to `to` (`MIGRATE ... KEYS`, a
    /// hundred at a time). Returns how many moved.
    pub fn move_slot_keys(&self, slot: u16, from: usize, to: usize) -> Result<usize, TestkitError> {
        let (s, port) = (slot.to_string(), self.nodes[to].port().to_string());
        let mut moved = 0;
        loop {
            let keys: Vec<Vec<u8>> =
                admin::query(&self.nodes[from], &["CLUSTER", "GETKEYSINSLOT", &s, "100"])?;
            if keys.is_empty() {
                return Ok(moved);
            }
            moved += keys.len();
            admin::migrate(&self.nodes[from], &port, &keys)?;
        }
    }

    /// Assigns `slot` to `to` on every live master (`SETSLOT ... NODE`),
    /// `to` first, which ends the migration.
    pub fn finish_slot_migration(&self, slot: u16, to: usize) -> Result<(), TestkitError> {
        let s = slot.to_string();
        let mut order = vec![to];
        order.extend(self.masters()?.into_iter().filter(|m| *m != to));
        for m in order {
            admin::query::<()>(
                &self.nodes[m],
                &["CLUSTER", "SETSLOT", &s, "NODE", &self.ids[to]],
            )?;
        }
        Ok(())
    }

    /// Every key matching `pattern` (`KEYS` on each live master), to find
    /// the keys, and so the slots, a component wrote.
    pub fn keys_matching(&self, pattern: &str) -> Result<Vec<Vec<u8>>, TestkitError> {
        let mut out = Vec::new();
        for m in self.masters()? {
            let keys: Vec<Vec<u8>> = admin::query(&self.nodes[m], &["KEYS", pattern])?;
            out.extend(keys);
        }
        Ok(out)
    }

    /// Kills every node.
    pub fn kill_all(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
    }

    /// Restarts every node on its port with its `nodes.conf`, and waits for
    /// `cluster_state:ok`. Data is not kept (nothing is persisted).
    pub fn restart_all(&mut self) -> Result<(), TestkitError> {
        for n in &mut self.nodes {
            n.restart()?;
        }
        self.wait_ok()
    }

    fn index_of(&self, id: &str) -> Option<usize> {
        self.ids.iter().position(|x| x == id)
    }

    fn any_live(&self) -> Result<&RedisServer, TestkitError> {
        self.nodes
            .iter()
            .find(|n| n.pid().is_some())
            .ok_or_else(|| admin::error("asking the cluster", "every node is down".into()))
    }

    /// `CLUSTER NODES` as a live node sees it.
    fn topology(&self) -> Result<Vec<NodeLine>, TestkitError> {
        let text: String = admin::query(self.any_live()?, &["CLUSTER", "NODES"])?;
        Ok(text.lines().filter_map(NodeLine::parse).collect())
    }

    fn live_nodes_ok(&self) -> bool {
        self.nodes.iter().filter(|n| n.pid().is_some()).all(|n| {
            admin::query::<String>(n, &["CLUSTER", "INFO"])
                .is_ok_and(|r| r.contains("cluster_state:ok"))
        })
    }

    fn wait_ok(&self) -> Result<(), TestkitError> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.live_nodes_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(TestkitError::NotReady(
            "the cluster did not reach cluster_state:ok within 20 s".into(),
            self.nodes[0].dir().join("redis.log").display().to_string(),
        ))
    }

    fn wait_replicas_in_sync(&self) -> Result<(), TestkitError> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let synced = self.nodes.iter().all(|n| {
                admin::query::<String>(n, &["INFO", "replication"])
                    .is_ok_and(|r| r.contains("role:master") || r.contains("master_link_status:up"))
            });
            if synced {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(TestkitError::NotReady(
            "the replicas did not sync with their masters within 20 s".into(),
            self.nodes[0].dir().join("redis.log").display().to_string(),
        ))
    }
}

/// `redis-cli --cluster create` over `nodes`.
fn create(nodes: &[RedisServer], replicas: usize) -> Result<(), TestkitError> {
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port()))
        .collect();
    let status = Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(&addrs)
        .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => TestkitError::NotInstalled("redis-cli"),
            _ => TestkitError::Io {
                what: "running redis-cli --cluster create".into(),
                source: e,
            },
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(TestkitError::NotReady(
            format!("`redis-cli --cluster create` failed ({status})"),
            nodes[0].dir().join("redis.log").display().to_string(),
        ))
    }
}

/// A port `p` with `p` and its cluster bus port `p + 10000` both free.
fn free_cluster_port() -> Result<u16, TestkitError> {
    for _ in 0..200 {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(TestkitError::io("finding a free port"))?;
        let port = listener
            .local_addr()
            .map_err(TestkitError::io("finding a free port"))?
            .port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return Ok(port);
        }
    }
    Err(TestkitError::NotReady(
        "no free port pair for a cluster node".into(),
        String::new(),
    ))
}
