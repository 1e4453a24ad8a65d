//! The Lua scripts: one round trip per decision. Times are microseconds;
//! `now < 0` asks the script to read the server's `TIME`.

/// Exact sliding log in a sorted set: at most `limit` members with a score
/// in (now - window, now].
pub(crate) const LOG: &str = r#"
local key = KEYS[1]
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local seed = ARGV[5]
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count + n <= limit then
  for i = 1, n do
    redis.call('ZADD', key, now, seed .. ':' .. i)
  end
  redis.call('PEXPIRE', key, math.ceil(window / 1000) + 1)
  return {1, limit - count - n, 0, window}
end
local e = redis.call('ZRANGE', key, count + n - limit - 1, count + n - limit - 1, 'WITHSCORES')
local retry = window
if e[2] then
  retry = tonumber(e[2]) + window - now
end
return {0, math.max(limit - count, 0), math.max(retry, 1), window}
"#;

/// Sliding-window counter. At most `limit` per aligned window.
///
/// Written for server time per decision (what caps a fleet's shared
/// limiter): the quota's window and limit are literals in the script (one
/// script per quota: Lua parses them once, at load), `now` and the cost are
/// passed only when needed (`ARGV[1]`: now in µs, or `s` or absent for the
/// server's `TIME`; `ARGV[2]`: the cost, absent for 1), counts are written
/// with the call's own argument (no number formatting), floors and
/// ceilings are taken with `%` (an operator, where `math.floor` is a global
/// and a field looked up on every call), and an admission answers one
/// integer, `remaining * __PACK__ + reset_ms` (see [`Packing`]). A refusal
/// answers `{0, remaining, retry_us, reset_us}`.
/// `benches/redis_script_instructions.sh` counts the server's instructions
/// per call.
///
/// The state has two forms (see [`counter_body`]): one integer for limits
/// below 2^21 ([`COUNTER_PACKED_BODY`]), a hash above
/// ([`COUNTER_HASH_BODY`]).
const COUNTER_TEMPLATE: &str = r#"
local W = __WINDOW__
local L = __LIMIT__
__NOW_AND_COST__
__COUNTER_BODY__"#;

/// Limits below this keep their state in one integer
/// ([`COUNTER_PACKED_BODY`]); larger ones in a hash.
pub(crate) const PACKED_LIMIT_BOUND: u32 = 1 << 21;

/// The counter's decision for `key`, cost `n` (`ARGV[2] or '1'`: the cost
/// as the caller sent it), at `now`, its state in one integer: `(window
/// index mod 2048) * 2^42 + previous window's count * 2^21 + current
/// window's count` (below 2^53: exact in a Lua number; counts never exceed
/// the limit, below 2^21 here: [`PACKED_LIMIT_BOUND`]). Shared by the
/// one-key script and the batch's per-key function.
///
/// One `GET` reads the whole state; an admission in the key's current
/// window then writes with one `INCRBY` of the cost (no number
/// formatting), a new window writes the integer whole with its expiry
/// (once per window), and a refusal writes nothing (nothing for replicas
/// or the AOF while a flood is refused). The window index is kept modulo
/// 2048: a key expires at most two windows and a millisecond after the
/// write that opened its window (windows are at least 1 ms), so in real
/// time an index 2047 or more windows old is never read (only a clock
/// that jumps by a multiple of 2048 windows, or one more, while Redis
/// keeps the key, as a test's manual clock can, would meet one). A hash of
/// fields (`HMGET` and `HINCRBY`) took about 25 % more server instructions
/// per admission.
///
/// A key that holds the hash form (a limit that was 2^21 or more, or a
/// levee before this form) is converted on its first use, its counts and
/// expiry kept; a string that holds no counter (not an integer in range)
/// starts over; any other type is a `WRONGTYPE` error.
pub(crate) const COUNTER_PACKED_BODY: &str = r#"local idx = (now - now % W) / W
local raw = redis.pcall('GET', key)
if type(raw) == 'table' then
  if redis.call('TYPE', key).ok ~= 'hash' then
    -- Raises WRONGTYPE.
    raw = redis.call('GET', key)
  end
  local h = redis.call('HMGET', key, 'w', 'c', 'p')
  local ttl = redis.call('PTTL', key)
  redis.call('DEL', key)
  local hw = tonumber(h[1])
  raw = false
  if hw and ttl > 0 then
    local c = math.min(math.max(tonumber(h[2]) or 0, 0), L)
    local p = math.min(math.max(tonumber(h[3]) or 0, 0), L)
    raw = ((hw % 2048) * 2097152 + p) * 2097152 + c
    redis.call('SET', key, raw, 'PX', ttl)
  end
end
local v = tonumber(raw)
if not v or v < 0 or v % 1 ~= 0 or v >= 9007199254740992 then
  v = 0
end
local curr = v % 2097152
local rest = (v - curr) / 2097152
local prev = rest % 2097152
local w = (rest - prev) / 2097152
local m = idx % 2048
-- v == 0: no state (a written state's count is at least 1).
local same = w == m and v ~= 0
if not same then
  if w == (m + 2047) % 2048 then
    prev = curr
  else
    prev = 0
  end
  curr = 0
end
local into = now - idx * W
local est = prev * (W - into) / W + curr
if est + n <= L + 1e-9 then
  if same then
    redis.call('INCRBY', key, ARGV[2] or '1')
  else
    -- A new window: the state matters until the next one ends, so the key
    -- expires two windows after this one starts (set once per window).
    local ms = (2 * W - into) / 1000
    redis.call('SET', key, (m * 2097152 + math.min(prev, L)) * 2097152 + n, 'PX', ms + (-ms) % 1 + 1)
  end
__ADMITTED__
end
__REFUSED__"#;

/// The counter's decision with its state in a hash with fixed fields: `w`
/// (the current window's index), `c` (its count), `p` (the previous
/// window's count), for limits of 2^21 and more (see
/// [`COUNTER_PACKED_BODY`]). A key that holds the packed integer form (the
/// limit was raised) starts over.
pub(crate) const COUNTER_HASH_BODY: &str = r#"local idx = (now - now % W) / W
local s = redis.pcall('HMGET', key, 'w', 'c', 'p')
if s.err then
  -- The key holds the packed integer form of a limit below 2^21 (the
  -- limit was raised): it starts over as a hash; any type but a string
  -- raises WRONGTYPE below.
  if redis.call('TYPE', key).ok == 'string' then
    redis.call('DEL', key)
  end
  s = redis.call('HMGET', key, 'w', 'c', 'p')
end
local w = tonumber(s[1])
local curr, prev = 0, 0
if w == idx then
  curr = tonumber(s[2]) or 0
  prev = tonumber(s[3]) or 0
elseif w == idx - 1 then
  prev = tonumber(s[2]) or 0
end
local into = now - idx * W
local est = prev * (W - into) / W + curr
if est + n <= L + 1e-9 then
  if w == idx then
    redis.call('HINCRBY', key, 'c', ARGV[2] or '1')
  else
    -- A new window: the state matters until the next one ends, so the key
    -- expires two windows after this one starts (set once per window).
    redis.call('HSET', key, 'w', idx, 'c', curr + n, 'p', prev)
    local ms = (2 * W - into) / 1000
    redis.call('PEXPIRE', key, ms + (-ms) % 1 + 1)
  end
__ADMITTED__
end
__REFUSED__"#;

/// An admission's answer, the end of both bodies: `rem` and `reset` in the
/// packed integer when they fit (see [`Packing`]).
const ADMITTED: &str = r#"  local rem = L - est - n
  rem = rem - rem % 1
  local reset = (2 * W - into) / 1000
  reset = reset + (-reset) % 1
  if rem < __REM_MAX__ and reset < __PACK__ then
    return rem * __PACK__ + reset
  end
  return {1, rem, 0, 2 * W - into}"#;

/// A refusal's answer, the end of both bodies.
const REFUSED: &str = r#"local retry
if curr + n <= L and prev > 0 then
  local need = 1 - (L - curr - n) / prev
  retry = math.max(1, math.ceil(need * W) - into)
else
  local need = 0
  if curr > 0 then
    need = math.max(0, 1 - (L - n) / curr)
  end
  retry = (W - into) + math.ceil(need * W)
end
return {0, math.max(0, math.floor(L - est)), retry, 2 * W - into}"#;

/// The counter's decision body for `limit`, its two tails filled in.
pub(crate) fn counter_body(limit: u32) -> String {
    with_tails(if limit < PACKED_LIMIT_BOUND {
        COUNTER_PACKED_BODY
    } else {
        COUNTER_HASH_BODY
    })
}

/// `body` ([`COUNTER_PACKED_BODY`] or [`COUNTER_HASH_BODY`]) with its two
/// tails filled in.
pub(crate) fn with_tails(body: &str) -> String {
    body.replace("__ADMITTED__", ADMITTED)
        .replace("__REFUSED__", REFUSED)
}

/// The counter for several keys in one call ([`counter_batch`]): `ARGV[1]`
/// is `now` (µs) or `s` for the server's `TIME` (read once for the whole
/// batch), `ARGV[1 + i]` the cost of `KEYS[i]`; the answer is an array of
/// the one-key script's answers, in key order. The same key may appear more
/// than once: each decision sees the ones before it.
const COUNTER_BATCH_TEMPLATE: &str = r#"
local W = __WINDOW__
local L = __LIMIT__
local now
if ARGV[1] ~= 's' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = t[1] * 1000000 + t[2]
end
local function decide(key, n, cost)
__BATCH_BODY__
end
local out = {}
for i = 1, #KEYS do
  local cost = ARGV[i + 1]
  out[i] = decide(KEYS[i], tonumber(cost), cost)
end
return out
"#;

/// The counter's and the GCRA's first lines: the key, `now` (µs: `ARGV[1]`,
/// or the server's `TIME` when it is absent or `s`) and the cost `n`
/// (`ARGV[2]`, absent for 1).
const NOW_AND_COST: &str = r#"local key = KEYS[1]
local a = ARGV[1]
local now
if a and a ~= 's' then
  now = tonumber(a)
else
  local t = redis.call('TIME')
  now = t[1] * 1000000 + t[2]
end
local n = 1
if ARGV[2] then n = tonumber(ARGV[2]) end"#;

/// How an admission's one-integer answer splits: `remaining << shift |
/// reset_ms`, the shift chosen per limiter as the fewest bits that hold its
/// longest reset, so the remaining count gets the rest of the 53 bits a Lua
/// number (a double) holds exactly. A reply that does not fit (checked by
/// the script) is the four-number array instead.
///
/// A single integer is what keeps a decision cheap on both sides: against
/// `{1, remaining, 0, reset_us}` it saves the server building a Lua table
/// and a four-element reply, and the client parsing four RESP elements
/// (about 4,000 instructions of 17,000 per decision, callgrind). A fixed
/// 28-bit shift sent any limit of 2^24 or more down the array path on every
/// admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Packing {
    shift: u32,
}

impl Packing {
    /// For resets of at most `max_reset_ms`.
    pub(crate) fn for_reset(max_reset_ms: u64) -> Packing {
        Packing {
            shift: (u64::BITS - max_reset_ms.leading_zeros()).clamp(1, 52),
        }
    }

    /// `2^shift`: resets below it fit.
    fn factor(self) -> u64 {
        1 << self.shift
    }

    /// `2^(53 - shift)`: remaining counts below it fit.
    fn remaining_bound(self) -> u64 {
        1 << (53 - self.shift)
    }

    /// `template` with `__PACK__` and `__REM_MAX__` filled in.
    fn fill(self, template: &str) -> String {
        template
            .replace("__PACK__", &self.factor().to_string())
            .replace("__REM_MAX__", &self.remaining_bound().to_string())
    }

    /// The remaining count and reset (ms) of a packed answer.
    pub(crate) fn unpack(self, packed: i64) -> (u64, u64) {
        let packed = packed.max(0) as u64;
        (packed >> self.shift, packed & (self.factor() - 1))
    }
}

/// The counter's packing: its reset is at most two windows.
pub(crate) fn counter_packing(window_us: i64) -> Packing {
    Packing::for_reset(
        window_us
            .max(0)
            .unsigned_abs()
            .saturating_mul(2)
            .div_ceil(1000),
    )
}

/// The counter script for a window of `window_us` µs and `limit`.
pub(crate) fn counter(window_us: i64, limit: u32) -> String {
    counter_with_body(window_us, limit, &counter_body(limit))
}

/// The one-key counter script with `body` (a [`counter_body`]) as its
/// decision: [`counter`], and the bench's side-by-side forms.
pub(crate) fn counter_with_body(window_us: i64, limit: u32, body: &str) -> String {
    counter_packing(window_us).fill(
        &COUNTER_TEMPLATE
            .replace("__NOW_AND_COST__", NOW_AND_COST)
            .replace("__COUNTER_BODY__", body)
            .replace("__WINDOW__", &window_us.to_string())
            .replace("__LIMIT__", &limit.to_string()),
    )
}

/// The batch counter script (see [`COUNTER_BATCH_TEMPLATE`]) for a window
/// of `window_us` µs and `limit`: every key decided as [`counter`] decides
/// it, with the same packing.
pub(crate) fn counter_batch(window_us: i64, limit: u32) -> String {
    counter_packing(window_us).fill(
        &COUNTER_BATCH_TEMPLATE
            .replace(
                "__BATCH_BODY__",
                &counter_body(limit).replace("ARGV[2] or '1'", "cost"),
            )
            .replace("__WINDOW__", &window_us.to_string())
            .replace("__LIMIT__", &limit.to_string()),
    )
}

/// GCRA on one key holding the theoretical arrival time (µs), the shape
/// go-redis's `redis_rate` uses, written as the counter is (see
/// [`counter`]): `__T__` is the emission interval (µs per permit), `__TAU__`
/// the burst's span (burst * T). `ARGV` as the counter's. An admission
/// answers `remaining * __PACK__ + reset_ms` (reset: until the burst is whole
/// again), a refusal `{0, remaining, retry_us, reset_us}`. Cheaper than the
/// counter per decision (one value read and written, and a refusal writes
/// nothing); see docs/benchmarks.md. `__PACK__`: see [`Packing`].
const GCRA_TEMPLATE: &str = r#"
local T = __T__
local TAU = __TAU__
__NOW_AND_COST__
local tat = tonumber(redis.call('GET', key)) or now
if tat < now then
  tat = now
end
local new_tat = tat + n * T
local allow_at = new_tat - TAU
if allow_at > now then
  return {0, math.max(0, math.floor((now - (tat - TAU)) / T)), allow_at - now, tat - now}
end
local reset = (new_tat - now) / 1000
reset = reset + (-reset) % 1
redis.call('SET', key, new_tat, 'PX', reset + 1)
local rem = (now - allow_at) / T
rem = rem - rem % 1
if rem < __REM_MAX__ and reset < __PACK__ then
  return rem * __PACK__ + reset
end
return {1, rem, 0, new_tat - now}
"#;

/// The GCRA script for `burst` permits replenished one every
/// `emission_us` µs.
pub(crate) fn gcra(emission_us: i64, burst: u32) -> String {
    let tau = emission_us.saturating_mul(i64::from(burst));
    gcra_packing(emission_us, burst).fill(
        &GCRA_TEMPLATE
            .replace("__NOW_AND_COST__", NOW_AND_COST)
            .replace("__T__", &emission_us.to_string())
            .replace("__TAU__", &tau.to_string()),
    )
}

/// The GCRA's packing: an admission's reset is at most the burst's span.
pub(crate) fn gcra_packing(emission_us: i64, burst: u32) -> Packing {
    let tau = emission_us.saturating_mul(i64::from(burst));
    Packing::for_reset(tau.max(0).unsigned_abs().div_ceil(1000))
}

#[cfg(test)]
mod tests {
    use levee_redis::{Command, RedisClient, Reply, Script};

    use super::*;

    #[test]
    fn packing_takes_the_fewest_bits_that_hold_the_longest_reset() {
        // A 1 s window: resets up to 2,000 ms, 11 bits; 42 for the count.
        let second = counter_packing(1_000_000);
        assert_eq!((second.factor(), second.remaining_bound()), (2048, 1 << 42));
        // A day's window (resets up to 172,800,000 ms): the old fixed split.
        assert_eq!(counter_packing(86_400_000_000).factor(), 1 << 28);
        assert_eq!(gcra_packing(1_000, 10).factor(), 16, "10 ms: 4 bits");
        for p in [
            Packing::for_reset(0),
            Packing::for_reset(1),
            second,
            counter_packing(i64::MAX),
            gcra_packing(i64::MAX, u32::MAX),
        ] {
            // The largest answer that fits is exact in a double.
            let (rem, reset) = (p.remaining_bound() - 1, p.factor() - 1);
            let packed = rem * p.factor() + reset;
            assert!(packed < 1 << 53, "{p:?}");
            assert_eq!(p.unpack(packed as i64), (rem, reset), "{p:?}");
        }
    }

    /// The counter floors and ceils with `%` (an operator) instead of
    /// `math.floor` / `math.ceil` (a global and a field looked up per
    /// call): the same values in Redis' Lua, checked over fractions, whole
    /// numbers, negatives and large values.
    #[tokio::test]
    async fn floor_and_ceil_by_remainder_match_the_math_library_in_redis_lua() {
        let server = levee_testkit::RedisServer::start().unwrap();
        let client = RedisClient::standalone(server.url()).build().unwrap();
        let check = Script::new(
            r#"
local bad = 0
local xs = {0, 0.5, 1, 1.0000001, 2.3, 7.999999999, 1e-12, 999999.5, 4503599627370495.5, 2^52}
for _, x in ipairs(xs) do
  for _, y in ipairs({x, -x}) do
    for _, z in ipairs({y, y / 1000, y * 3 / 7}) do
      if z - z % 1 ~= math.floor(z) then bad = bad + 1 end
      if z + (-z) % 1 ~= math.ceil(z) then bad = bad + 1 end
    end
  end
end
for i = 1, 20000 do
  local z = (i * 7919 % 100003) / 997 - 50
  if z - z % 1 ~= math.floor(z) then bad = bad + 1 end
  if z + (-z) % 1 ~= math.ceil(z) then bad = bad + 1 end
end
return bad
"#,
        );
        assert_eq!(client.eval(&check.call()).await.unwrap(), Reply::Int(0));
    }

    /// An admission under a limit of 2^24 or more (the `redis_limit`
    /// bench's `u32::MAX / 2` a second) answers one integer, not the
    /// four-number array.
    #[tokio::test]
    async fn an_admission_under_a_large_limit_answers_one_integer() {
        let server = levee_testkit::RedisServer::start().unwrap();
        let client = RedisClient::standalone(server.url()).build().unwrap();
        let big = u32::MAX / 2;
        let burst = 50_000_000;
        let cases = [
            (
                counter(1_000_000, big),
                counter_packing(1_000_000),
                big,
                2_000,
            ),
            (gcra(1, burst), gcra_packing(1, burst), burst, 50_000),
        ];
        for (i, (code, packing, limit, max_reset_ms)) in cases.into_iter().enumerate() {
            let script = Script::new(&code);
            let reply = client.eval(&script.call().key(vec![b'k', i as u8])).await;
            let Ok(Reply::Int(packed)) = reply else {
                panic!("not one integer: {reply:?}");
            };
            let (remaining, reset_ms) = packing.unpack(packed);
            assert_eq!(remaining, u64::from(limit) - 1);
            assert!((1..=max_reset_ms).contains(&reset_ms), "{reset_ms}");
        }
    }

    /// A window of 10 s (µs), for the state tests below.
    const TEN_S: i64 = 10_000_000;

    /// One call of `script` for `key` at `now` (µs) with cost `n`.
    async fn decide(client: &RedisClient, script: &Script, key: &str, now: i64, n: u32) -> Reply {
        client
            .eval(&script.call().key(key).arg(now).arg(n))
            .await
            .unwrap()
    }

    async fn command(client: &RedisClient, name: &'static str, args: &[&str]) -> Reply {
        let mut cmd = Command::new(name);
        for a in args {
            cmd = cmd.arg(*a);
        }
        client.command(&cmd).await.unwrap()
    }

    /// An admission's remaining count (the packed answer).
    fn remaining(reply: &Reply) -> u64 {
        match reply {
            Reply::Int(packed) => counter_packing(TEN_S).unpack(*packed).0,
            other => panic!("not an admission: {other:?}"),
        }
    }

    fn refused(reply: &Reply) -> bool {
        matches!(reply, Reply::Array(a) if a.first() == Some(&Reply::Int(0)))
    }

    /// The start of a window whose index modulo 2048 is `m`.
    fn window_start(m: i64) -> i64 {
        // About 2027 in µs, rounded to a window whose index is 0 mod 2048.
        let base = 1_800_000_000_000_000 / (2048 * TEN_S) * (2048 * TEN_S);
        base + m * TEN_S
    }

    /// The state is one integer: the window's index (mod 2048), the previous
    /// and the current window's counts; a refusal leaves it, and its
    /// expiry, as they were; the previous window's count carries across
    /// the index's wrap from 2047 to 0.
    #[tokio::test]
    async fn the_counter_state_is_one_integer_that_a_refusal_leaves_unchanged() {
        let server = levee_testkit::RedisServer::start().unwrap();
        let client = RedisClient::standalone(server.url()).build().unwrap();
        let script = Script::new(&counter(TEN_S, 5));
        let t = window_start(2047) + 1_000;
        for (i, n) in [2, 1, 2].into_iter().enumerate() {
            let r = decide(&client, &script, "k", t + i as i64, n).await;
            assert_eq!(remaining(&r), [3, 2, 0][i], "{r:?}");
        }
        let state = command(&client, "GET", &["k"]).await;
        let expected = (2047i64 << 42) + 5;
        assert_eq!(state, Reply::Bytes(expected.to_string().into_bytes()));
        let ttl = command(&client, "PTTL", &["k"]).await;
        command(&client, "CONFIG", &["RESETSTAT"]).await;
        assert!(refused(&decide(&client, &script, "k", t + 5, 1).await));
        // A refusal writes nothing (Redis counts a script's own commands).
        let Reply::Bytes(info) = command(&client, "INFO", &["commandstats"]).await else {
            panic!()
        };
        let info = String::from_utf8(info).unwrap();
        for write in ["cmdstat_incrby", "cmdstat_set:", "cmdstat_del"] {
            assert!(!info.contains(write), "{write} in {info}");
        }
        assert!(info.contains("cmdstat_get:calls=1,"), "{info}");
        assert_eq!(command(&client, "GET", &["k"]).await, state, "a refusal");
        let Reply::Int(after) = command(&client, "PTTL", &["k"]).await else {
            panic!()
        };
        let Reply::Int(before) = ttl else { panic!() };
        assert!(
            after <= before && after > before - 1_000,
            "{before} {after}"
        );

        // Window 2048 (index 0 mod 2048), half over: half of the 5 still
        // counts, 2.5 of 5 left, so a cost of 2 is admitted and the next is
        // refused.
        let next = window_start(2048) + TEN_S / 2;
        let r = decide(&client, &script, "k", next, 2).await;
        assert_eq!(remaining(&r), 0, "{r:?}");
        assert!(refused(&decide(&client, &script, "k", next + 1, 1).await));
        let expected = (5i64 << 21) + 2;
        assert_eq!(
            command(&client, "GET", &["k"]).await,
            Reply::Bytes(expected.to_string().into_bytes())
        );
        // A refusal on a key that does not exist (a cost above the limit,
        // which the limiter refuses before it asks) leaves no key.
        let batch = Script::new(&counter_batch(TEN_S, 1));
        let call = batch.call().key("y").arg(next).arg(2u32);
        assert_eq!(command(&client, "EXISTS", &["y"]).await, Reply::Int(0));
        let r = client.eval(&call).await.unwrap();
        assert!(matches!(&r, Reply::Array(a) if refused(&a[0])), "{r:?}");
        assert_eq!(command(&client, "EXISTS", &["y"]).await, Reply::Int(0));
    }

    /// A key left in the hash form (by a levee before the packed form, or
    /// by a limit of 2^21 or more) is converted on its first use, its
    /// counts and expiry kept; a string that holds no counter starts over;
    /// a key of another type is an error and is left alone; a limit raised
    /// to 2^21 or more starts a packed key over in the hash form.
    #[tokio::test]
    async fn a_counter_key_in_another_form_is_converted_or_starts_over() {
        let server = levee_testkit::RedisServer::start().unwrap();
        let client = RedisClient::standalone(server.url()).build().unwrap();
        let script = Script::new(&counter(TEN_S, 10));
        let t = window_start(3);
        let idx = (t / TEN_S).to_string();
        command(&client, "HSET", &["h", "w", &idx, "c", "3", "p", "2"]).await;
        command(&client, "PEXPIRE", &["h", "15000"]).await;
        // At the window's start the previous window counts whole: 2 + 3 + 1.
        assert_eq!(remaining(&decide(&client, &script, "h", t, 1).await), 4);
        assert_eq!(
            command(&client, "TYPE", &["h"]).await,
            Reply::Status("string".into())
        );
        let Reply::Int(ttl) = command(&client, "PTTL", &["h"]).await else {
            panic!()
        };
        assert!(ttl > 14_000 && ttl <= 15_000, "the expiry kept: {ttl}");
        assert_eq!(remaining(&decide(&client, &script, "h", t, 1).await), 3);

        command(&client, "SET", &["s", "not a counter"]).await;
        assert_eq!(remaining(&decide(&client, &script, "s", t, 1).await), 9);
        command(&client, "SET", &["big", "9223372036854775807"]).await;
        assert_eq!(remaining(&decide(&client, &script, "big", t, 1).await), 9);
        // Not an integer, in the current window's place (index 3 mod 2048):
        // starts over rather than failing in `INCRBY`.
        let fractional = format!("{}.5", 3i64 << 42);
        command(&client, "SET", &["frac", &fractional]).await;
        assert_eq!(remaining(&decide(&client, &script, "frac", t, 1).await), 9);
        assert_eq!(remaining(&decide(&client, &script, "frac", t, 1).await), 8);

        command(&client, "ZADD", &["z", "1", "m"]).await;
        let err = client
            .eval(&script.call().key("z").arg(t).arg(1u32))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("WRONGTYPE"), "{err}");
        assert_eq!(
            command(&client, "ZCARD", &["z"]).await,
            Reply::Int(1),
            "left alone"
        );

        // The limit raised past the packed form's bound: "h" starts over.
        let large = Script::new(&counter(TEN_S, PACKED_LIMIT_BOUND));
        let r = decide(&client, &large, "h", t, 1).await;
        assert_eq!(remaining(&r), u64::from(PACKED_LIMIT_BOUND) - 1);
        assert_eq!(
            command(&client, "TYPE", &["h"]).await,
            Reply::Status("hash".into())
        );
        // And back: converted again, its count kept.
        assert_eq!(remaining(&decide(&client, &script, "h", t, 1).await), 8);
    }

    /// The batch script decides as the one-key script does, the same key
    /// twice in one batch included, on either state form.
    #[tokio::test]
    async fn the_batch_decides_as_the_one_key_script() {
        let server = levee_testkit::RedisServer::start().unwrap();
        let client = RedisClient::standalone(server.url()).build().unwrap();
        let t = window_start(7) + 1;
        for limit in [3, PACKED_LIMIT_BOUND] {
            let one = Script::new(&counter(TEN_S, limit));
            let batch = Script::new(&counter_batch(TEN_S, limit));
            let costs = [1u32, 2, 1, 1];
            let mut call = batch.call().arg(t);
            for (key, n) in ["b", "b", "c", "b"].iter().zip(costs) {
                call = call.key(*key).arg(n);
            }
            let Reply::Array(batched) = client.eval(&call).await.unwrap() else {
                panic!()
            };
            let mut alone = Vec::new();
            for (key, n) in ["a", "a", "d", "a"].iter().zip(costs) {
                alone.push(decide(&client, &one, key, t, n).await);
            }
            assert_eq!(batched, alone, "limit {limit}");
            assert!(refused(&batched[3]) == (limit == 3), "{batched:?}");
            command(&client, "FLUSHALL", &[]).await;
        }
    }
}
