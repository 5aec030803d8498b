-- Helpers shared by the scripts: the clock, events, and putting a job where a
-- worker will find it.

-- Fields of a job's hash, as HMGET gives them; all nil (an empty table) when
-- the key is not a hash: a corrupt job, which must still be removable and
-- retryable (a worker fails it again at once) instead of aborting the script.
local function job_fields(key, ...)
  local found = redis.pcall('HMGET', key, ...)
  if found.err then
    return {}
  end
  return found
end

-- A queue's key base: `<prefix>:{<queue>}:`, or `<prefix>:<queue>:` for a name
-- that carries its own hash tag (`{tag}rest`, see conveyor.keys).
local function queue_base(prefix, queue)
  if string.sub(queue, 1, 1) == '{' then
    return prefix .. ':' .. queue .. ':'
  end
  return prefix .. ':{' .. queue .. '}:'
end

-- A key base -> its prefix and queue name (the inverse of queue_base; a prefix
-- holds no braces).
local function queue_of_base(base)
  local prefix, rest = string.match(base, '^(.-):({.*):$')
  return prefix, string.match(rest, '^{([^{}]*)}$') or rest
end

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
-- `jobs` is a list of {job_id, field, value, ...}, or of such objects as JSON
-- text already (add_jobs' usual jobs; always written as a batch).
local function emit_many(events_key, maxlen, event, jobs)
  if #jobs == 0 then
    return
  end
  if #jobs == 1 and type(jobs[1]) == 'table' then
    local job = jobs[1]
    redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*', 'event', event,
      'job_id', unpack(job))
    return
  end
  local parts = {}
  for i, job in ipairs(jobs) do
    if type(job) == 'string' then  -- its JSON object already
      parts[i] = job
    else
      local obj = {'{"job_id":', cjson.encode(job[1])}
      for j = 2, #job, 2 do
        obj[#obj + 1] = ',"' .. job[j] .. '":' .. cjson.encode(job[j + 1])
      end
      obj[#obj + 1] = '}'
      parts[i] = table.concat(obj)
    end
  end
  redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*', 'event', event,
    'jobs', '[' .. table.concat(parts, ',') .. ']')
end

-- A lock token: `<worker prefix><attempts started>:<attempts made>:<processed on>`.
-- Returns attempts started, attempts made and processed on as strings.
local function parse_token(token)
  return string.match(token, '(%d+):(%d+):(%d+)$')
end

-- The prioritized zset's score: priority * 2^31 + place, lowest first. A job
-- made ready takes the next of the upper half (2^30 + sequence: FIFO within
-- its priority); a job handed back unfinished the next of the lower half,
-- counting down (2^30 - 1 - sequence), so it goes before every job of its
-- priority, as a plain one goes to the head of the wait list.
local PRIORITY_SHIFT = 2147483648  -- 2^31
local PRIORITY_HALF = 1073741824   -- 2^30
local function priority_score(priority, seq, head)
  if head then
    return priority * PRIORITY_SHIFT + PRIORITY_HALF - 1 - seq % PRIORITY_HALF
  end
  return priority * PRIORITY_SHIFT + PRIORITY_HALF + seq % PRIORITY_HALF
end

-- The delayed zset's score: due * 1024 + n, where n is the number of jobs
-- already due in that ms (FIFO: a tie would sort by id as text, "10" before
-- "2"). Past 1023 jobs in one ms they share n = 1023 (and sort by id). The
-- score is exact below 2^53, so due times up to 2^43 - 1 ms (year 2248) are
-- kept to the ms; a later one is kept as that last ms. The due time is
-- floor(score / 1024). Numbers this size must reach Redis as numbers (Lua's
-- tostring and .. keep only 14 digits).
local DELAY_SHIFT = 1024
local MAX_DUE = 8796093022207  -- 2^43 - 1

local function due_of_score(score)
  return math.floor(tonumber(score) / DELAY_SHIFT)
end

-- The score of a job due at `due` placed after those already due that ms.
-- `last` (optional) caches the last score given per due within one script.
local function delayed_score(delayed_key, due, last)
  if due > MAX_DUE then
    due = MAX_DUE
  end
  local low = due * DELAY_SHIFT
  local high = low + DELAY_SHIFT - 1
  local prev = last and last[due]
  if not prev then
    local top = redis.call('ZREVRANGEBYSCORE', delayed_key, high, low, 'WITHSCORES', 'LIMIT', 0, 1)
    prev = top[2] and tonumber(top[2]) or low - 1
  end
  local score = prev < high and prev + 1 or high
  if last then
    last[due] = score
  end
  return score
end

-- Groups (add(group=...)): each group's ready jobs wait in its own list
-- `group:<g>`; the `groups` zset is the round-robin rotation of groups with
-- work (lowest score is served next; a served group goes to the back). A
-- group at its concurrency cap waits in the `groups:busy` set, one at its rate
-- limit in `groups:limited` (score = when it may start again); neither is in
-- the rotation meanwhile. `groups:active` counts each group's running jobs.

-- Put group `g` at the back of the rotation unless it is there, busy or limited.
local function rotate_in(base, g)
  local rotation = base .. 'groups'
  if redis.call('ZSCORE', rotation, g) or redis.call('ZSCORE', base .. 'groups:limited', g)
      or redis.call('SISMEMBER', base .. 'groups:busy', g) == 1 then
    return
  end
  local last = redis.call('ZRANGE', rotation, -1, -1, 'WITHSCORES')
  redis.call('ZADD', rotation, #last > 0 and tonumber(last[2]) + 1 or 1, g)
end

-- The queue has (had) grouped jobs: meta `groups`, set by whatever creates a
-- job with a group. Fetches and promotions look at groups only then.
local function mark_grouped(base)
  redis.call('HSET', base .. 'meta', 'groups', '1')
end

-- Make a job of group `g` ready: its group's list, and the group into the rotation.
local function push_grouped(base, g, job_id, front)
  local key = base .. 'group:' .. g
  if front then
    redis.call('LPUSH', key, job_id)
  else
    redis.call('RPUSH', key, job_id)
  end
  rotate_in(base, g)
end

-- A running job of group `g` ended (finished, handed back or stalled): one
-- slot of the group is free again; a group that was at its cap rejoins the
-- rotation, and an idle worker is woken for it.
local function release_group_slot(base, g, marker_key)
  local active = base .. 'groups:active'
  if redis.call('HINCRBY', active, g, -1) <= 0 then
    redis.call('HDEL', active, g)
  end
  if redis.call('SREM', base .. 'groups:busy', g) == 1
      and redis.call('LLEN', base .. 'group:' .. g) > 0 then
    rotate_in(base, g)
    redis.call('ZADD', marker_key, 0, '0')
  end
end

-- Make a job ready: the wait list (priority 0), the prioritized zset, or its
-- group's list, and wake one idle worker unless the queue is paused. `front`
-- puts a plain job at the head of the wait list (lifo; a prioritized job
-- ignores it, as add does). `handed_back`: a job handed back unfinished goes
-- to the head of the wait list, its group, or its priority.
local function push_ready(wait_key, prioritized_key, pc_key, meta_key, marker_key,
                          job_id, priority, front, handed_back)
  priority = priority or 0  -- nil: a corrupt `prio` field counts as 0
  local base = string.sub(wait_key, 1, -5)  -- wait_key is base .. 'wait'
  local group = job_fields(base .. 'job:' .. job_id, 'grp')[1]
  front = front or handed_back
  if group then
    push_grouped(base, group, job_id, front)
  elseif priority == 0 then
    if front then
      redis.call('LPUSH', wait_key, job_id)
    else
      redis.call('RPUSH', wait_key, job_id)
    end
  else
    redis.call('ZADD', prioritized_key,
      priority_score(priority, redis.call('INCR', pc_key), handed_back), job_id)
  end
  if redis.call('HEXISTS', meta_key, 'paused') == 0 then
    redis.call('ZADD', marker_key, 0, '0')
  end
end

-- Put a job in the delayed zset, after those due in the same ms, and make sure
-- an idle worker wakes in time for the earliest due job (the 'd' marker's
-- score is that time, in ms). Returns the due time as kept (see MAX_DUE).
local function push_delayed(delayed_key, marker_key, job_id, due)
  local score = delayed_score(delayed_key, due)
  redis.call('ZADD', delayed_key, score, job_id)
  due = due_of_score(score)
  redis.call('ZADD', marker_key, 'LT', due, 'd')
  return due
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

-- Make many jobs ready at once (due delayed jobs, bulk retry and promote):
-- plain ones to the tail of the wait list (one RPUSH per chunk), those with a
-- `prio` to the prioritized zset, grouped ones to their group; one wake-up
-- marker for all of them unless the queue is paused.
-- k: wait, prioritized, pc, meta, marker.
local function push_ready_many(k, base, ids)
  if #ids == 0 then
    return
  end
  local plain = {}
  local grouped = redis.call('HEXISTS', k.meta, 'groups') == 1
  for _, id in ipairs(ids) do
    local job
    if grouped then
      job = redis.call('HMGET', base .. 'job:' .. id, 'prio', 'grp')
    else  -- one field costs less, and this runs for every due delayed job
      job = {redis.call('HGET', base .. 'job:' .. id, 'prio'), false}
    end
    local priority = tonumber(job[1] or '0') or 0  -- corrupt: as 0, not an abort
    if job[2] then
      push_grouped(base, job[2], id, false)
    elseif priority == 0 then
      plain[#plain + 1] = id
    else
      redis.call('ZADD', k.prioritized, priority_score(priority, redis.call('INCR', k.pc)), id)
    end
  end
  call_chunked({'RPUSH', k.wait}, plain)
  if redis.call('HEXISTS', k.meta, 'paused') == 0 then
    redis.call('ZADD', k.marker, 0, '0')
  end
end

-- Running attempts `ids` ended (finished, handed back, stalled) or their jobs
-- are deleted: a cancel mark is for the attempt it was made for, and a later
-- job or attempt with the same id must not inherit it. One HDEL per batch (as
-- cheap as asking whether the hash exists).
local function forget_cancels(base, ids)
  call_chunked({'HDEL', base .. 'cancels'}, ids)
end

-- Delete jobs: hash and logs, and a flow parent's children bookkeeping in a
-- queue that ever had flow parents (meta `parents`, set by add_flow): a DEL of
-- keys that don't exist costs, and trimming runs for every finished batch.
local function delete_jobs(base, ids)
  local keys = {}
  local parents = redis.call('HEXISTS', base .. 'meta', 'parents') == 1
  for _, id in ipairs(ids) do
    local key = base .. 'job:' .. id
    keys[#keys + 1] = key
    keys[#keys + 1] = key .. ':logs'
    if parents then
      keys[#keys + 1] = key .. ':dependencies'
      keys[#keys + 1] = key .. ':processed'
      keys[#keys + 1] = key .. ':failed'
    end
  end
  call_chunked({'DEL'}, keys)
  forget_cancels(base, ids)
end

-- Keep a finished set within its retention: younger than age_ms (-1: any age)
-- and at most `count` newest (-1: any number). `before_delete(ids)`, if given,
-- runs before the jobs are deleted (flows.lua: failed children tell their parent).
local function trim_finished(set_key, base, count, age_ms, now, before_delete)
  if age_ms >= 0 then
    local old = redis.call('ZRANGEBYSCORE', set_key, '-inf', now - age_ms, 'LIMIT', 0, 1000)
    if #old > 0 then
      if before_delete then before_delete(old) end
      delete_jobs(base, old)
      redis.call('ZREM', set_key, unpack(old))
    end
  end
  if count >= 0 then
    local excess = redis.call('ZCARD', set_key) - count
    if excess > 0 then
      local ids = redis.call('ZRANGE', set_key, 0, excess - 1)
      if before_delete then before_delete(ids) end
      delete_jobs(base, ids)
      redis.call('ZREMRANGEBYRANK', set_key, 0, excess - 1)
    end
  end
end
