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
pub(crate) const COUNTER: &str = r#"
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
