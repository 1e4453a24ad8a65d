//! Administrative commands to one node, over a fresh blocking connection,
//! and `CLUSTER NODES` read line by line.

use std::time::Duration;

use crate::TestkitError;
use crate::server::RedisServer;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Sends one command to `node` and reads its reply as `T`.
pub(super) fn query<T: redis::FromRedisValue>(
    node: &RedisServer,
    args: &[&str],
) -> Result<T, TestkitError> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    run(node, &cmd, args)
}

/// `CLUSTER KEYSLOT key` (the key may be any bytes).
pub(super) fn keyslot(node: &RedisServer, key: &[u8]) -> Result<u16, TestkitError> {
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("KEYSLOT").arg(key);
    run(node, &cmd, &["CLUSTER", "KEYSLOT"])
}

/// `MIGRATE 127.0.0.1 port "" 0 5000 KEYS keys...`.
pub(super) fn migrate(
    node: &RedisServer,
    port: &str,
    keys: &[Vec<u8>],
) -> Result<(), TestkitError> {
    let mut cmd = redis::cmd("MIGRATE");
    cmd.arg("127.0.0.1")
        .arg(port)
        .arg("")
        .arg(0)
        .arg(5000)
        .arg("KEYS");
    for k in keys {
        cmd.arg(k.as_slice());
    }
    run(node, &cmd, &["MIGRATE"])
}

fn run<T: redis::FromRedisValue>(
    node: &RedisServer,
    cmd: &redis::Cmd,
    what: &[&str],
) -> Result<T, TestkitError> {
    let fail = |e: redis::RedisError| {
        error(
            &format!("`{}` on 127.0.0.1:{}", what.join(" "), node.port()),
            e.to_string(),
        )
    };
    let client = redis::Client::open(node.url()).map_err(fail)?;
    let mut conn = client.get_connection_with_timeout(TIMEOUT).map_err(fail)?;
    conn.set_read_timeout(Some(TIMEOUT)).map_err(fail)?;
    conn.set_write_timeout(Some(TIMEOUT)).map_err(fail)?;
    cmd.query(&mut conn).map_err(fail)
}

pub(super) fn error(what: &str, detail: String) -> TestkitError {
    TestkitError::Command {
        what: what.to_string(),
        detail,
    }
}

/// One line of `CLUSTER NODES`.
#[derive(Debug)]
pub(super) struct NodeLine {
    pub(super) id: String,
    flags: String,
    /// A replica's master.
    pub(super) master_id: Option<String>,
    /// Slot ranges served (migration markers left out).
    slots: Vec<(u16, u16)>,
}

impl NodeLine {
    /// `<id> <addr> <flags> <master> <ping> <pong> <epoch> <link> <slots>...`
    pub(super) fn parse(line: &str) -> Option<NodeLine> {
        let mut f = line.split_whitespace();
        let id = f.next()?.to_string();
        let _addr = f.next()?;
        let flags = f.next()?.to_string();
        let master = f.next()?;
        let slots = f
            .skip(4)
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| match s.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => s.parse().ok().map(|x| (x, x)),
            })
            .collect();
        Some(NodeLine {
            id,
            flags,
            master_id: (master != "-").then(|| master.to_string()),
            slots,
        })
    }

    pub(super) fn is_master(&self) -> bool {
        self.flags.split(',').any(|f| f == "master")
    }

    pub(super) fn failed(&self) -> bool {
        self.flags.split(',').any(|f| f == "fail" || f == "fail?")
    }

    pub(super) fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nodes_line_gives_role_master_and_slots() {
        let m = NodeLine::parse(
            "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460 7000 [6000->-b2]",
        )
        .unwrap();
        assert!(m.is_master() && !m.failed());
        assert!(m.serves(0) && m.serves(5460) && m.serves(7000));
        assert!(!m.serves(5461) && !m.serves(6000));
        let r = NodeLine::parse("b2 127.0.0.1:7003@17003 slave,fail a1 0 0 1 connected").unwrap();
        assert_eq!(r.master_id.as_deref(), Some("a1"));
        assert!(!r.is_master() && r.failed());
    }
}
