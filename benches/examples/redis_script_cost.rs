//! Server time per decision of the Redis limiter's scripts, side by side
//! in one run on one throwaway `redis-server` (levee-testkit): `INFO
//! commandstats`' `usec_per_call` of `EVALSHA`, reset before each batch,
//! the candidates interleaved batch by batch, the median of the batches
//! printed. Candidates: `return 1`, a bare `GET` + `SET PX` (the floor of
//! any read-modify-write script), levee's counter script as shipped
//! (`RedisSlidingWindow`, `WindowMode::Counter`), and a GCRA script of the
//! shape go-redis's `redis_rate` uses (one key, a read and a write),
//! written for this comparison; each with the server's `TIME` and with the
//! caller's time.
//!
//! Run: `cargo run --release -p levee-benches --example redis_script_cost [-- BATCHES CALLS]`

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

#[allow(dead_code)]
#[path = "../../crates/levee-limit/src/redis_window/scripts.rs"]
mod scripts;

/// `redis_rate`'s shape: the key holds the theoretical arrival time (µs);
/// ARGV: now (µs, < 0 for the server's TIME), emission interval (µs per
/// call), burst tolerance (µs), cost.
const GCRA: &str = r#"
local key = KEYS[1]
local now = tonumber(ARGV[1])
local emission = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local tat = tonumber(redis.call('GET', key)) or now
if tat < now then
  tat = now
end
local new_tat = tat + n * emission
local allow_at = new_tat - tolerance
if allow_at > now then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', key, new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, math.floor((now - allow_at) / emission), 0, new_tat - now}
"#;

/// The counter's state in one string, `"w c p"`, read with `GET` and
/// written with one `SET ... PX` (a candidate).
const COUNTER_STR: &str = r#"
local key = KEYS[1]
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local idx = math.floor(now / window)
local w, curr, prev = -2, 0, 0
local s = redis.call('GET', key)
if s then
  local a, b, c = string.match(s, '^(%-?%d+) (%d+) (%d+)$')
  w = tonumber(a) or -2
  curr = tonumber(b) or 0
  prev = tonumber(c) or 0
end
if w == idx - 1 then
  prev = curr
  curr = 0
elseif w ~= idx then
  prev = 0
  curr = 0
end
local into = now - idx * window
local est = prev * (window - into) / window + curr
if est + n <= limit + 1e-9 then
  redis.call('SET', key, idx .. ' ' .. (curr + n) .. ' ' .. prev, 'PX', math.ceil((2 * window - into) / 1000) + 1)
  return {1, math.max(0, math.floor(limit - est - n)), 0, 2 * window - into}
end
return {0, math.max(0, math.floor(limit - est)), 1, 2 * window - into}
"#;

/// The counter with one hash field per window index: `HMGET` of the
/// previous and current windows, `HINCRBY` of the current one (a
/// candidate).
const COUNTER_FIELDS: &str = r#"
local key = KEYS[1]
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local idx = math.floor(now / window)
local s = redis.call('HMGET', key, idx - 1, idx)
local prev = tonumber(s[1]) or 0
local curr = tonumber(s[2])
local into = now - idx * window
local est = prev * (window - into) / window + (curr or 0)
if est + n <= limit + 1e-9 then
  redis.call('HINCRBY', key, idx, n)
  if not curr then
    redis.call('HDEL', key, idx - 2)
    redis.call('PEXPIRE', key, math.ceil((2 * window - into) / 1000) + 1)
  end
  return {1, math.floor(limit - est - n), 0, 2 * window - into}
end
return {0, math.floor(limit - est), 1, 2 * window - into}
"#;

const FLOOR: &str = r#"
local v = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', 60000)
return 1
"#;

struct Candidate {
    name: &'static str,
    script: redis::Script,
    /// The caller's time (µs) as ARGV[1], or -1 for the server's TIME.
    client_time: bool,
    /// ARGV after the time.
    args: Vec<i64>,
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn evalsha_usec_per_call(conn: &mut redis::Connection) -> f64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(conn).unwrap();
    info.lines()
        .find(|l| l.starts_with("cmdstat_evalsha:"))
        .and_then(|l| l.split(',').find(|f| f.starts_with("usec_per_call=")))
        .and_then(|f| f["usec_per_call=".len()..].parse().ok())
        .unwrap_or(f64::NAN)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let batches: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(15);
    let calls: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let server = levee_testkit::RedisServer::start().expect("redis-server on the PATH");
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let window = 60_000_000i64; // 1 min, µs
    let limit = i64::from(u32::MAX / 2); // never refuses: the admit path
    let emission = 1i64; // GCRA: 1 µs per call, a huge burst: the admit path
    let tolerance = 1_000_000_000_000i64;
    let mut candidates = vec![
        Candidate {
            name: "return 1",
            script: redis::Script::new("return 1"),
            client_time: true,
            args: vec![],
        },
        Candidate {
            name: "return {1, 2, 3, 4}",
            script: redis::Script::new("return {1, 2, 3, 4}"),
            client_time: true,
            args: vec![],
        },
        Candidate {
            name: "GET + SET PX (floor)",
            script: redis::Script::new(FLOOR),
            client_time: true,
            args: vec![],
        },
    ];
    for (client_time, label) in [(false, "server TIME"), (true, "caller's time")] {
        for (name, source) in [
            ("counter as shipped (hash)", scripts::COUNTER),
            ("counter, one string", COUNTER_STR),
            ("counter, a field per window", COUNTER_FIELDS),
        ] {
            candidates.push(Candidate {
                name: Box::leak(format!("{name}, {label}").into_boxed_str()),
                script: redis::Script::new(source),
                client_time,
                args: vec![window, limit, 1, 0],
            });
        }
        candidates.push(Candidate {
            name: Box::leak(format!("GCRA (redis_rate shape), {label}").into_boxed_str()),
            script: redis::Script::new(GCRA),
            client_time,
            args: vec![emission, tolerance, 1],
        });
    }
    let mut seen: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    // Each candidate on keys of its own (their values differ in type).
    let keys: Vec<Vec<String>> = (0..candidates.len())
        .map(|c| (0..100).map(|i| format!("c{c}:{{user-{i}}}")).collect())
        .collect();
    for batch in 0..batches {
        for (ci, c) in candidates.iter_mut().enumerate() {
            let keys = &keys[ci];
            let _: () = redis::cmd("CONFIG")
                .arg("RESETSTAT")
                .query(&mut conn)
                .unwrap();
            for i in 0..calls {
                let mut inv = c.script.key(&keys[i % keys.len()]);
                inv.arg(if c.client_time { now_micros() } else { -1 });
                for a in &c.args {
                    inv.arg(*a);
                }
                // Loaded once (EVALSHA from then on): the first batch's
                // first call may pay an EVAL.
                let _: redis::Value = inv.invoke(&mut conn).unwrap();
                if i == 0 && batch == 0 {
                    let _: () = redis::cmd("CONFIG")
                        .arg("RESETSTAT")
                        .query(&mut conn)
                        .unwrap();
                }
            }
            seen.entry(c.name)
                .or_default()
                .push(evalsha_usec_per_call(&mut conn));
        }
    }
    println!(
        "server time per EVALSHA (usec_per_call), median of {batches} interleaved batches of {calls} calls"
    );
    println!("| script | median µs | min | max |");
    println!("|---|---:|---:|---:|");
    for c in &candidates {
        let mut v = seen[c.name].clone();
        v.sort_by(f64::total_cmp);
        println!(
            "| {} | {:.2} | {:.2} | {:.2} |",
            c.name,
            v[v.len() / 2],
            v[0],
            v[v.len() - 1]
        );
    }
}
