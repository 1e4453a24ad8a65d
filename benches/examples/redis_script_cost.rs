//! Server time per decision of the Redis limiter's scripts, side by side
//! in one run on one throwaway `redis-server` (levee-testkit): `INFO
//! commandstats`' `usec_per_call` of `EVALSHA`, reset before each batch,
//! the candidates interleaved batch by batch, the median of the batches
//! printed. Candidates: `return 1`, a bare `GET` + `SET PX` (the floor of
//! any read-modify-write script), levee's counter script as shipped
//! (`RedisSlidingWindow`, `WindowMode::Counter`) now, in its earlier hash
//! form, with an optimistic `INCRBY` (tried, not shipped) and before issue
//! 21, the counters' refusal path (a limit of 1),
//! a GCRA script of the shape go-redis's `redis_rate` uses (one key, a
//! read and a write), written for this comparison, and levee's
//! `RedisGcra` script; each with the server's `TIME` and with the caller's
//! time.
//!
//! Run: `cargo run --release -p levee-benches --example redis_script_cost [-- --batches B --calls N]`;
//! `benches/redis_script_instructions.sh` counts each candidate's server
//! instructions per call under callgrind instead.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

#[allow(dead_code)]
#[path = "../../crates/levee-limit/src/redis_window/scripts.rs"]
mod scripts;

/// `redis_rate`'s shape (written for this comparison, not copied): the key holds the theoretical arrival time (µs);
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

/// The counter script as it was before issue 21 (quota and time as
/// arguments, three fields parsed, a four-number reply), for the
/// before/after comparison.
const COUNTER_BEFORE: &str = r#"
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
local s = redis.call('HMGET', key, 'w', 'c', 'p')
local w = tonumber(s[1] or '-2')
local curr = tonumber(s[2] or '0')
local prev = tonumber(s[3] or '0')
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
  if w == idx then
    redis.call('HSET', key, 'c', curr + n)
  else
    -- A new window: the state matters until the next one ends, so the key
    -- expires two windows after this one starts (set once per window).
    redis.call('HSET', key, 'w', idx, 'c', curr + n, 'p', prev)
    redis.call('PEXPIRE', key, math.ceil((2 * window - into) / 1000) + 1)
  end
  return {1, math.max(0, math.floor(limit - est - n)), 0, 2 * window - into}
end
local retry
if curr + n <= limit and prev > 0 then
  local need = 1 - (limit - curr - n) / prev
  retry = math.max(1, math.ceil(need * window) - into)
else
  local need = 0
  if curr > 0 then
    need = math.max(0, 1 - (limit - n) / curr)
  end
  retry = (window - into) + math.ceil(need * window)
end
return {0, math.max(0, math.floor(limit - est)), retry, 2 * window - into}
"#;

/// The one-integer counter with an optimistic `INCRBY` (the first form of
/// issue 21's packed counter, not shipped): an admission in the window is
/// one command, but a refusal writes twice (the `INCRBY` and its undo).
/// For the comparison with the shipped read-first form.
const COUNTER_OPTIMISTIC_BODY: &str = r#"local idx = (now - now % W) / W
local v = redis.pcall('INCRBY', key, ARGV[2] or '1')
if type(v) ~= 'number' then
  local t = redis.call('TYPE', key).ok
  if t == 'hash' then
    local h = redis.call('HMGET', key, 'w', 'c', 'p')
    local ttl = redis.call('PTTL', key)
    redis.call('DEL', key)
    local hw = tonumber(h[1])
    if hw and ttl > 0 then
      local c = math.min(math.max(tonumber(h[2]) or 0, 0), L)
      local p = math.min(math.max(tonumber(h[3]) or 0, 0), L)
      redis.call('SET', key, ((hw % 256) * 4194304 + p) * 8388608 + c, 'PX', ttl)
    end
  elseif t == 'string' then
    redis.call('DEL', key)
  end
  -- Again; any other type raises WRONGTYPE this time.
  v = redis.call('INCRBY', key, ARGV[2] or '1')
end
local curr = v % 8388608
local rest = (v - curr) / 8388608
local prev = rest % 4194304
local w = (rest - prev) / 4194304
local m = idx % 256
-- v == n: the increment made the key (or found an empty state).
local same = w == m and v ~= n
if same then
  curr = curr - n
elseif w == (m + 255) % 256 then
  prev = curr - n
  curr = 0
else
  curr, prev = 0, 0
end
local into = now - idx * W
local est = prev * (W - into) / W + curr
if est + n <= L + 1e-9 then
  if not same then
    -- A new window: the state matters until the next one ends, so the key
    -- expires two windows after this one starts (set once per window).
    local ms = (2 * W - into) / 1000
    redis.call('SET', key, (m * 4194304 + math.min(prev, L)) * 8388608 + n, 'PX', ms + (-ms) % 1 + 1)
  end
__ADMITTED__
end
if v == n then
  redis.call('DEL', key)
else
  redis.call('INCRBY', key, -n)
end
__REFUSED__"#;

const FLOOR: &str = r#"
local v = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', 60000)
return 1
"#;

/// How a candidate is told the time (its `ARGV[1]`).
#[derive(Clone, Copy)]
enum Time {
    /// The caller's time, µs.
    Caller,
    /// Nothing: levee's scripts read the server's `TIME` when `ARGV[1]` is
    /// absent.
    Server,
    /// `-1`: this bench's own scripts read the server's `TIME` then.
    ServerMinusOne,
}

impl Time {
    /// The caller's time (`caller`) or the server's, told in levee's way
    /// (`levee`) or this bench's.
    fn of(caller: bool, levee: bool) -> Time {
        match (caller, levee) {
            (true, _) => Time::Caller,
            (false, true) => Time::Server,
            (false, false) => Time::ServerMinusOne,
        }
    }
}

struct Candidate {
    name: &'static str,
    script: redis::Script,
    time: Time,
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

const USAGE: &str = "usage: redis_script_cost [--url URL] [--only NAME] [--batches B] [--calls N]
  --url URL    an external redis-server (default: a throwaway one from levee-testkit)
  --only NAME  one candidate, by its exact name in the table
  --batches B  interleaved batches (default 15); --calls N  calls a batch (default 20000)";

/// `[--url URL] [--only NAME] [--batches B] [--calls N]`: with `--url`,
/// an external server (e.g. one under `valgrind --tool=callgrind`, whose
/// instruction counts are stable on a busy machine); `--only` one
/// candidate by its exact name.
struct Opts {
    url: Option<String>,
    only: Option<String>,
    batches: usize,
    calls: usize,
}

impl Opts {
    fn parse() -> Opts {
        let mut o = Opts {
            url: None,
            only: None,
            batches: 15,
            calls: 20_000,
        };
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            let mut value = || args.next().expect("a value after the flag");
            match a.as_str() {
                "--url" => o.url = Some(value()),
                "--only" => o.only = Some(value()),
                "--batches" => o.batches = value().parse().expect("--batches N"),
                "--calls" => o.calls = value().parse().expect("--calls N"),
                "--help" | "-h" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => {
                    eprintln!("unknown argument {other:?}\n{USAGE}");
                    std::process::exit(2);
                }
            }
        }
        o
    }
}

fn main() {
    let opts = Opts::parse();
    let (batches, calls) = (opts.batches, opts.calls);
    let (_server, url) = match &opts.url {
        Some(url) => (None, url.clone()),
        None => {
            let s = levee_testkit::RedisServer::start().expect("redis-server on the PATH");
            let url = s.url();
            (Some(s), url)
        }
    };
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_connection().unwrap();
    let window = 60_000_000i64; // 1 min, µs
    // Never refuses (the admit path), and below the packed form's bound.
    let limit = i64::from(scripts::PACKED_LIMIT_BOUND - 1);
    let emission = 1i64; // GCRA: 1 µs per call, a huge burst: the admit path
    let tolerance = 1_000_000_000_000i64;
    let mut candidates = vec![
        Candidate {
            name: "return 1",
            script: redis::Script::new("return 1"),
            time: Time::Caller,
            args: vec![],
        },
        Candidate {
            name: "return {1, 2, 3, 4}",
            script: redis::Script::new("return {1, 2, 3, 4}"),
            time: Time::Caller,
            args: vec![],
        },
        Candidate {
            name: "GET + SET PX (floor)",
            script: redis::Script::new(FLOOR),
            time: Time::Caller,
            args: vec![],
        },
    ];
    for (caller, label) in [(false, "server TIME"), (true, "caller's time")] {
        candidates.push(Candidate {
            name: Box::leak(format!("counter before, {label}").into_boxed_str()),
            script: redis::Script::new(COUNTER_BEFORE),
            time: Time::of(caller, false),
            args: vec![window, limit, 1, 0],
        });
        candidates.push(Candidate {
            name: Box::leak(format!("counter now, {label}").into_boxed_str()),
            script: redis::Script::new(&scripts::counter(window, limit as u32)),
            time: Time::of(caller, true),
            args: vec![],
        });
        for (form, body) in [
            ("hash", scripts::COUNTER_HASH_BODY),
            ("optimistic", COUNTER_OPTIMISTIC_BODY),
        ] {
            candidates.push(Candidate {
                name: Box::leak(format!("counter {form}, {label}").into_boxed_str()),
                script: redis::Script::new(&scripts::counter_with_body(
                    window,
                    limit as u32,
                    &scripts::with_tails(body),
                )),
                time: Time::of(caller, true),
                args: vec![],
            });
        }
        candidates.push(Candidate {
            name: Box::leak(format!("levee RedisGcra, {label}").into_boxed_str()),
            script: redis::Script::new(&scripts::gcra(1, 16_000_000)),
            time: Time::of(caller, true),
            args: vec![],
        });
        candidates.push(Candidate {
            name: Box::leak(format!("GCRA (redis_rate shape), {label}").into_boxed_str()),
            script: redis::Script::new(GCRA),
            time: Time::of(caller, false),
            args: vec![emission, tolerance, 1],
        });
    }
    // The refusal path: a limit of 1, so after each key's first call every
    // call is refused (the caller's time).
    for (name, body) in [
        ("counter now, refused", scripts::COUNTER_PACKED_BODY),
        ("counter hash, refused", scripts::COUNTER_HASH_BODY),
        ("counter optimistic, refused", COUNTER_OPTIMISTIC_BODY),
    ] {
        candidates.push(Candidate {
            name,
            script: redis::Script::new(&scripts::counter_with_body(
                window,
                1,
                &scripts::with_tails(body),
            )),
            time: Time::Caller,
            args: vec![],
        });
    }
    if let Some(only) = &opts.only {
        candidates.retain(|c| c.name == only.as_str());
        assert!(!candidates.is_empty(), "no candidate named {only:?}");
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
                match c.time {
                    Time::Caller => {
                        inv.arg(now_micros());
                    }
                    Time::Server => {}
                    Time::ServerMinusOne => {
                        inv.arg(-1);
                    }
                }
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
