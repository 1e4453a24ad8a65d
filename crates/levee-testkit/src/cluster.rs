//! [`RedisCluster`]: a Redis Cluster of masters on loopback ports.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::TestkitError;
use crate::server::{RedisServer, RedisServerOptions};

/// A Redis Cluster of `n` masters (no replicas), all slots assigned, ready
/// when every node reports `cluster_state:ok`. Dropping it kills every node.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` nodes (at least 3) and forms a cluster.
    pub fn start(masters: usize) -> Result<RedisCluster, TestkitError> {
        let masters = masters.max(3);
        let opts = RedisServerOptions::cluster_node();
        let mut nodes = Vec::with_capacity(masters);
        for _ in 0..masters {
            let dir = tempfile::tempdir().map_err(TestkitError::io("creating a temp dir"))?;
            nodes.push(RedisServer::start_in(
                opts.clone(),
                dir,
                free_cluster_port()?,
            )?);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
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
        if !status.success() {
            return Err(TestkitError::NotReady(
                format!("`redis-cli --cluster create` failed ({status})"),
                nodes[0].dir().join("redis.log").display().to_string(),
            ));
        }
        let cluster = RedisCluster { nodes };
        cluster.wait_ok()?;
        Ok(cluster)
    }

    /// The nodes' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes themselves (to pause or kill one).
    pub fn nodes_mut(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
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

    fn wait_ok(&self) -> Result<(), TestkitError> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let all_ok = self.nodes.iter().all(|n| {
                n.raw(&[vec!["CLUSTER", "INFO"]], Duration::from_millis(500))
                    .map(|r| r.contains("cluster_state:ok"))
                    .unwrap_or(false)
            });
            if all_ok {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(TestkitError::NotReady(
            "the cluster did not reach cluster_state:ok within 20 s".into(),
            self.nodes[0].dir().join("redis.log").display().to_string(),
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
