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

/// Sliding-window counter in one hash with fixed fields: `w` (the current
/// window's index), `c` (its count), `p` (the previous window's count). At
/// most `limit` per aligned window.
///
/// Written for server time per decision (what caps a fleet's shared
/// limiter): the quota's window and limit are literals in the script (one
/// script per quota: Lua parses them once, at load), `now` and the cost are
/// passed only when needed (`ARGV[1]`: now in µs, or `s` or absent for the
/// server's `TIME`; `ARGV[2]`: the cost, absent for 1), fields are parsed
/// only when used, the count is written with `HINCRBY` and the call's own
/// argument (no number formatting), and an admission answers one integer:
/// `remaining * 2^28 + reset_ms` ([`PACK`]). A refusal answers
/// `{0, remaining, retry_us, reset_us}`. `benches/redis_script_instructions.sh`
/// counts the server's instructions per call.
const COUNTER_TEMPLATE: &str = r#"
local W = __WINDOW__
local L = __LIMIT__
__NOW_AND_COST__
local idx = math.floor(now / W)
local s = redis.call('HMGET', key, 'w', 'c', 'p')
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
    redis.call('PEXPIRE', key, math.ceil((2 * W - into) / 1000) + 1)
  end
  local rem = math.floor(L - est - n)
  local reset = math.ceil((2 * W - into) / 1000)
  if rem < 16777216 and reset < 268435456 then
    return rem * 268435456 + reset
  end
  return {1, rem, 0, 2 * W - into}
end
local retry
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
return {0, math.max(0, math.floor(L - est)), retry, 2 * W - into}
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

/// An admission's one-integer answer: `remaining << PACK | reset_ms`.
pub(crate) const PACK: u32 = 28;

/// The counter script for a window of `window_us` µs and `limit`.
pub(crate) fn counter(window_us: i64, limit: u32) -> String {
    COUNTER_TEMPLATE
        .replace("__NOW_AND_COST__", NOW_AND_COST)
        .replace("__WINDOW__", &window_us.to_string())
        .replace("__LIMIT__", &limit.to_string())
}

/// GCRA on one key holding the theoretical arrival time (µs), the shape
/// go-redis's `redis_rate` uses, written as the counter is (see
/// [`counter`]): `__T__` is the emission interval (µs per permit), `__TAU__`
/// the burst's span (burst * T). `ARGV` as the counter's. An admission
/// answers `remaining * 2^28 + reset_ms` (reset: until the burst is whole
/// again), a refusal `{0, remaining, retry_us, reset_us}`. Cheaper than the
/// counter per decision (one value read and written, and a refusal writes
/// nothing); see docs/benchmarks.md.
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
redis.call('SET', key, new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
local rem = math.floor((now - allow_at) / T)
local reset = math.ceil((new_tat - now) / 1000)
if rem < 16777216 and reset < 268435456 then
  return rem * 268435456 + reset
end
return {1, rem, 0, new_tat - now}
"#;

/// The GCRA script for `burst` permits replenished one every
/// `emission_us` µs.
pub(crate) fn gcra(emission_us: i64, burst: u32) -> String {
    GCRA_TEMPLATE
        .replace("__NOW_AND_COST__", NOW_AND_COST)
        .replace("__T__", &emission_us.to_string())
        .replace(
            "__TAU__",
            &emission_us.saturating_mul(i64::from(burst)).to_string(),
        )
}
