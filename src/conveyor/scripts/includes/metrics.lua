-- Per-minute metrics, written once per batch by move_to_finished.
--
-- metrics:completed / metrics:failed  hash: minute (ms // 60000) -> jobs finished
--   in that minute. Kept two weeks: once the hash holds more minutes than that,
--   the oldest fields are dropped (checked only when a new minute starts).
-- metrics:times:<minute>  hash: 'w<b>' / 'p<b>' -> jobs whose wait (ready to
--   started) / processing time fell in log bucket b; expires after METRICS_TIMES_TTL.
--   Bucket b holds times t (ms) with floor(log2(t + 1) * 4) = b: four buckets per
--   doubling, so a percentile read from them is within 19% of the true value.

local METRICS_MINUTES = 20160            -- two weeks of minutes
local METRICS_TIMES_TTL = 3 * 3600 * 1000
local LOG2 = math.log(2)

local function new_metrics()
  return {c = 0, f = 0, times = {}}
end

local function time_bucket(ms)
  if ms < 0 then ms = 0 end
  return math.floor(math.log(ms + 1) / LOG2 * 4)
end

-- A job finished (kind 'c' completed or 'f' failed for good) at `now`; it
-- started at `pon` and was ready at `ready` (0: unknown, a retry).
local function record_timing(metrics, kind, pon, ready, now)
  metrics[kind] = metrics[kind] + 1
  local times = metrics.times
  local field = 'p' .. time_bucket(now - pon)
  times[field] = (times[field] or 0) + 1
  if ready > 0 then
    field = 'w' .. time_bucket(pon - ready)
    times[field] = (times[field] or 0) + 1
  end
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

local function save_metrics(metrics, base, now)
  if metrics.c == 0 and metrics.f == 0 then
    return
  end
  local minute = math.floor(now / 60000)
  local new_minute = false
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
  local times_key = base .. 'metrics:times:' .. minute
  local fields = {}
  for field in pairs(metrics.times) do
    fields[#fields + 1] = field
  end
  local current = redis.call('HMGET', times_key, unpack(fields))
  local updates = {}
  for i, field in ipairs(fields) do
    updates[#updates + 1] = field
    updates[#updates + 1] = (tonumber(current[i]) or 0) + metrics.times[field]
  end
  redis.call('HSET', times_key, unpack(updates))
  if new_minute then
    redis.call('PEXPIRE', times_key, METRICS_TIMES_TTL)
  end
end
