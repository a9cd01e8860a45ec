-- wrk: requests sent on a fixed schedule, for latency at the same load on every server.
-- args: hits|misses, size, URL count (hits) or run tag (misses), requests/s for this thread
--
-- A closed loop at saturation (hits.lua, misses.lua) puts the queue wherever the slowest
-- party is, and on a shared machine wrk's own threads are one of them: the latency wrk
-- records then depends on how the server's and wrk's time slices interleave. Here each thread
-- hands out send slots every 1/rate seconds (wrk asks delay() before each request of each of
-- its connections), so every server sees the same arrivals. wrk starts a request's clock when
-- it writes it; a slot that comes due while no connection is free is sent late, and how late
-- is reported (PACED line), so a server that could not keep up shows as such.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

local reqs, counter, prefix = {}, 0, nil
local interval, due = 1, nil
late_max, late_n = 0, 0  -- globals: done() reads them through thread:get
function init(args)
  local kind, size = args[1], args[2]
  if kind == "hits" then
    for k = 1, tonumber(args[3]) do reqs[k] = wrk.format("GET", "/" .. size .. "/hit-" .. k) end
  else
    prefix = "/" .. size .. "/miss-" .. args[3] .. "-" .. id .. "-"
  end
  interval = 1000 / tonumber(args[4])
end

function request()
  counter = counter + 1
  if prefix then return wrk.format("GET", prefix .. counter) end
  return reqs[(counter - 1) % #reqs + 1]
end

function delay()
  local now = now_ms()
  due = (due or now) + interval
  local wait = due - now
  if wait < -1 then  -- more than a millisecond behind the schedule
    late_n = late_n + 1
    if -wait > late_max then late_max = -wait end
  end
  -- wrk takes whole milliseconds: round, so a send is at most half a millisecond early
  return wait > 0 and math.floor(wait + 0.5) or 0
end

function done(summary, latency, requests)
  local worst, n = 0, 0
  for _, t in ipairs(threads) do
    worst = math.max(worst, t:get("late_max"))
    n = n + t:get("late_n")
  end
  io.write(string.format("PACED p999_us=%d late_max_ms=%.2f late_n=%d\n",
                         latency:percentile(99.9), worst, n))
end
