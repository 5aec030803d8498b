-- Helpers shared by the scripts: the clock, events, and putting a job where a
-- worker will find it.

-- Milliseconds since the epoch by Redis' own clock: one clock for every
-- producer and worker, whatever their hosts say.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Append an event to the queue's capped stream. `fields` is a flat list.
local function emit(events_key, maxlen, event, job_id, fields)
  if fields then
    redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*', 'event', event,
      'job_id', job_id, unpack(fields))
  else
    redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*', 'event', event,
      'job_id', job_id)
  end
end

-- The same event for many jobs in one stream entry: `event`, `jobs` = a JSON
-- array of objects, one per job, each with `job_id` and the event's own fields
-- (all strings, as in a single entry). One job gets an ordinary entry. Clients
-- expand batches (conveyor.events), so readers see one event per job.
-- `jobs` is a list of {job_id, field, value, ...}.
local function emit_many(events_key, maxlen, event, jobs)
  if #jobs == 0 then
    return
  end
  if #jobs == 1 then
    local job = jobs[1]
    redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*', 'event', event,
      'job_id', unpack(job))
    return
  end
  local parts = {}
  for i, job in ipairs(jobs) do
    local obj = {'{"job_id":', cjson.encode(job[1])}
    for j = 2, #job, 2 do
      obj[#obj + 1] = ',"' .. job[j] .. '":' .. cjson.encode(job[j + 1])
    end
    obj[#obj + 1] = '}'
    parts[i] = table.concat(obj)
  end
  redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*', 'event', event,
    'jobs', '[' .. table.concat(parts, ',') .. ']')
end

-- A lock token: `<worker prefix><attempts started>:<attempts made>:<processed on>`.
-- Returns attempts started, attempts made and processed on as strings.
local function parse_token(token)
  return string.match(token, '(%d+):(%d+):(%d+)$')
end

local PRIORITY_SHIFT = 2147483648  -- 2^31: score = priority * 2^31 + sequence

-- Make a job ready: the wait list (priority 0) or the prioritized zset, and
-- wake one idle worker unless the queue is paused. `front` puts a plain job
-- at the head of the wait list (lifo, or a job handed back unfinished).
local function push_ready(wait_key, prioritized_key, pc_key, meta_key, marker_key,
                          job_id, priority, front)
  if priority == 0 then
    if front then
      redis.call('LPUSH', wait_key, job_id)
    else
      redis.call('RPUSH', wait_key, job_id)
    end
  else
    local seq = redis.call('INCR', pc_key) % PRIORITY_SHIFT
    redis.call('ZADD', prioritized_key, priority * PRIORITY_SHIFT + seq, job_id)
  end
  if redis.call('HEXISTS', meta_key, 'paused') == 0 then
    redis.call('ZADD', marker_key, 0, '0')
  end
end

-- Put a job in the delayed zset and make sure an idle worker wakes in time
-- for the earliest due job (the 'd' marker's score is that time).
local function push_delayed(delayed_key, marker_key, job_id, due)
  redis.call('ZADD', delayed_key, due, job_id)
  redis.call('ZADD', marker_key, 'LT', due, 'd')
end

-- Run `head..., list...` (say {'ZADD', key} and score/member pairs) as few
-- commands as unpack()'s argument limit allows; the chunk size is even, so
-- pairs stay whole. Returns the replies of list-valued commands, concatenated.
local CHUNK = 2000
local function call_chunked(head, list)
  local out = {}
  for i = 1, #list, CHUNK do
    local args = {unpack(head)}
    for j = i, math.min(i + CHUNK - 1, #list) do
      args[#args + 1] = list[j]
    end
    local reply = redis.call(unpack(args))
    if type(reply) == 'table' then
      for _, value in ipairs(reply) do
        out[#out + 1] = value
      end
    end
  end
  return out
end

-- Delete jobs (hash and logs).
local function delete_jobs(base, ids)
  local keys = {}
  for _, id in ipairs(ids) do
    keys[#keys + 1] = base .. 'job:' .. id
    keys[#keys + 1] = base .. 'job:' .. id .. ':logs'
  end
  call_chunked({'DEL'}, keys)
end

-- Keep a finished set within its retention: younger than age_ms (-1: any age)
-- and at most `count` newest (-1: any number).
local function trim_finished(set_key, base, count, age_ms, now)
  if age_ms >= 0 then
    local old = redis.call('ZRANGEBYSCORE', set_key, '-inf', now - age_ms, 'LIMIT', 0, 1000)
    if #old > 0 then
      delete_jobs(base, old)
      redis.call('ZREM', set_key, unpack(old))
    end
  end
  if count >= 0 then
    local excess = redis.call('ZCARD', set_key) - count
    if excess > 0 then
      local ids = redis.call('ZRANGE', set_key, 0, excess - 1)
      delete_jobs(base, ids)
      redis.call('ZREMRANGEBYRANK', set_key, 0, excess - 1)
    end
  end
end
