-- wrk script for scripts/load-test: every request carries an `x-key`
-- header with one of 1,000,000 distinct values, cycling. Threads interleave
-- (thread i sends i, i+T, i+2T, ...), so together they cover all values
-- once before any repeats. Pass the thread count after `--`.

local threads = 0

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  nthreads = tonumber(args[1]) or 1
  n = 0
end

function request()
  local key = (n * nthreads + id) % 1000000
  n = n + 1
  return wrk.format("GET", "/", { ["x-key"] = "k" .. key })
end
