-- Per-minute metrics, written once per batch by move_to_finished.
--
-- metrics:completed / metrics:failed  hash: minute (ms // 60000) -> jobs finished
--   in that minute. Kept two weeks: once the hash holds more minutes than that,
--   the oldest fields are dropped (checked only when a new minute starts).
-- metrics:times:<minute>  hash: 'w<b>' / 'p<b>' -> attempts whose wait (ready to
--   started, first attempts) / processing time fell in log bucket b; expires after
--   METRICS_TIMES_TTL. Bucket b holds times t (ms) with floor(log2(t + 1) * 4) = b:
--   four buckets per doubling, so a percentile read from them is within 19% of
--   the true value. The worker counts its attempts into these fields itself
--   (conveyor.metrics.time_bucket) and sends one tally per report: no work per
--   job here.

local METRICS_MINUTES = 20160            -- two weeks of minutes
local METRICS_TIMES_TTL = 3 * 3600 * 1000

local function new_metrics()
  return {c = 0, f = 0}
end

local function trim_minutes(key, minute)
  if redis.call('HLEN', key) <= METRICS_MINUTES then
    return
  end
  local old = {}
  for _, field in ipairs(redis.call('HKEYS', key)) do
    if tonumber(field) <= minute - METRICS_MINUTES then
      old[#old + 1] = field
    end
  end
  call_chunked({'HDEL', key}, old)
end

-- Save a report's counts, and the timing tally of ARGV[at] pairs from ARGV[at + 1].
local function save_metrics(metrics, base, now, at)
  local minute = math.floor(now / 60000)
  local new_minute = false  -- this report is the minute's first of its kind
  for kind, name in pairs({c = 'completed', f = 'failed'}) do
    local n = metrics[kind]
    if n > 0 then
      local key = base .. 'metrics:' .. name
      if redis.call('HINCRBY', key, minute, n) == n then
        new_minute = true
        trim_minutes(key, minute)
      end
    end
  end
  local t = tonumber(ARGV[at])
  if t > 0 then
    local times_key = base .. 'metrics:times:' .. minute
    -- Only attempts that will retry: the minute's histogram may be new all the same.
    if metrics.c == 0 and metrics.f == 0 and redis.call('EXISTS', times_key) == 0 then
      new_minute = true
    end
    for i = at + 1, at + 2 * t, 2 do
      redis.call('HINCRBY', times_key, ARGV[i], ARGV[i + 1])
    end
    if new_minute then
      redis.call('PEXPIRE', times_key, METRICS_TIMES_TTL)
    end
  end
end
