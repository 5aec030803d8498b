-- Take up to `n` ready jobs into active for one worker. Shared by
-- move_to_active.lua and move_to_finished.lua (finish one batch, fetch the next
-- in the same round trip).
--
-- Order: due delayed jobs are promoted first; then the wait list (jobs without
-- a priority), then the prioritized zset (lowest priority number first).
-- Each taken job gets a lock token (see parse_token) in the locks hash and a
-- lock deadline (its score in active): one write of each per batch, so a job
-- costs a single HGETALL here. The job hash itself is not written until the
-- attempt ends.
--
-- Groups: see push_grouped in common.lua; `group_concurrency` caps the running
-- jobs of each group, `group_max` per `group_duration` ms its starts.
--
-- Limits, all read from one HMGET of meta: `paused`; `concurrency` (at most
-- that many active jobs across all workers); `limited_until` (ms: the queue
-- backs off until then, set by a RateLimitError or Worker.rate_limit); and the
-- worker's limiter (`limit_max` starts per `limit_ms`, all workers together,
-- over a sliding window: the `limiter` zset holds one member per start).
--
-- Returns {next_due, jobs, limit_wait, taken} where jobs is a list of {id,
-- HGETALL of job + tok, pon, ats} (a job whose key is not a hash goes to failed
-- instead, with a `failed` event); next_due is the earliest delayed due time
-- (ms) when nothing was taken, also on a paused queue (0 if none is delayed);
-- limit_wait > 0 means a rate limit stopped the fetch: ask again in that many
-- ms (don't block on the marker); taken is {id, token, ...} of the jobs (nil
-- when none), what a call records of its fetch (includes/calls.lua,
-- taken_again). The scripts reply with the first three.

-- The jobs of a recorded fetch (`taken`: {id, token, ...}) once more, as fetch_jobs returned them: those
-- whose lock the call still holds (their hashes are unchanged until their
-- attempt ends, so the reply is the one that was lost).
local function taken_again(k, base, taken)
  local jobs = {}
  for i = 1, #taken, 2 do
    local id, token = taken[i], taken[i + 1]
    if redis.call('HGET', k.locks, id) == token then
      local fields = redis.call('HGETALL', base .. 'job:' .. id)
      if #fields > 0 then
        local started, _, pon = parse_token(token)
        local m = #fields
        fields[m + 1], fields[m + 2] = 'tok', token
        fields[m + 3], fields[m + 4] = 'pon', pon
        fields[m + 5], fields[m + 6] = 'ats', started
        jobs[#jobs + 1] = {id, fields}
      end
    end
  end
  return jobs
end

-- Promote due delayed jobs (at most 1000 per call, in the order they fell
-- due: see delayed_score in common.lua) to the wait list, the prioritized zset
-- or their group.
local function promote_due(k, base, now, maxlen)
  local due = redis.call('ZRANGEBYSCORE', k.delayed, '-inf', (now + 1) * DELAY_SHIFT - 1,
    'LIMIT', 0, 1000)
  if #due == 0 then
    return
  end
  redis.call('ZREM', k.delayed, unpack(due))
  -- Wakes idle workers too: this call may take fewer than were promoted.
  push_ready_many(k, base, due)
  local waiting = {}
  for i, id in ipairs(due) do
    waiting[i] = {id}
  end
  emit_many(k.events, maxlen, 'waiting', waiting)
end

-- Work is ready, and another worker may take some: wake an idle one. `grouped`
-- false: the caller knows no group has work.
local function wake_if_work(k, base, grouped)
  if redis.call('LLEN', k.wait) > 0 or redis.call('ZCARD', k.prioritized) > 0
      or (grouped ~= false and redis.call('ZCARD', base .. 'groups') > 0) then
    redis.call('ZADD', k.marker, 0, '0')
  end
end

-- Up to `want` jobs without a group: the wait list, then the prioritized zset.
local function take_plain(k, want, ids)
  if want <= 0 then
    return
  end
  local popped = redis.call('LPOP', k.wait, want) or {}
  for _, id in ipairs(popped) do
    ids[#ids + 1] = id
  end
  if #popped < want then
    popped = redis.call('ZPOPMIN', k.prioritized, want - #popped)
    for i = 1, #popped, 2 do
      ids[#ids + 1] = popped[i]
    end
  end
end

-- Groups whose rate limit has passed go back into the rotation. Returns when
-- the next limited group may start again (nil if none is limited).
local function release_limited_groups(base, now)
  local limited = base .. 'groups:limited'
  local due = redis.call('ZRANGEBYSCORE', limited, '-inf', now)
  for _, g in ipairs(due) do
    redis.call('ZREM', limited, g)
    if redis.call('LLEN', base .. 'group:' .. g) > 0 then
      rotate_in(base, g)
    end
  end
  local first = redis.call('ZRANGE', limited, 0, 0, 'WITHSCORES')
  return first[2] and tonumber(first[2]) or nil
end

-- Up to `want` grouped jobs, one per group in turn (round-robin), skipping
-- groups at their concurrency cap (-> groups:busy) or rate limit (->
-- groups:limited). Returns when a limited group may start again, or nil.
local function take_grouped(base, want, ids, now, gcap, gmax, gdur)
  local rotation = base .. 'groups'
  local last = redis.call('ZRANGE', rotation, -1, -1, 'WITHSCORES')
  local seq = #last > 0 and tonumber(last[2]) or 0
  local next_free = nil
  while want > 0 do
    local popped = redis.call('ZPOPMIN', rotation)
    if #popped == 0 then
      break
    end
    local g = popped[1]
    local list = base .. 'group:' .. g
    local limiter = list .. ':limiter'
    local blocked = false
    if gcap > 0 and tonumber(redis.call('HGET', base .. 'groups:active', g) or '0') >= gcap then
      redis.call('SADD', base .. 'groups:busy', g)
      blocked = true
    elseif gmax > 0 then
      redis.call('ZREMRANGEBYSCORE', limiter, '-inf', now - gdur)
      if redis.call('ZCARD', limiter) >= gmax then
        local oldest = redis.call('ZRANGE', limiter, 0, 0, 'WITHSCORES')
        local free_at = tonumber(oldest[2]) + gdur
        redis.call('ZADD', base .. 'groups:limited', free_at, g)
        if not next_free or free_at < next_free then next_free = free_at end
        blocked = true
      end
    end
    if not blocked then
      local id = redis.call('LPOP', list)
      if id then
        ids[#ids + 1] = id
        want = want - 1
        redis.call('HINCRBY', base .. 'groups:active', g, 1)
        if gmax > 0 then
          redis.call('ZADD', limiter, now, id .. '@' .. now)
          redis.call('PEXPIRE', limiter, gdur)
        end
      end
      if redis.call('LLEN', list) > 0 then
        seq = seq + 1
        redis.call('ZADD', rotation, seq, g)
      end
    end
  end
  return next_free
end

-- The earliest delayed job's due time (ms), or 0 if none is delayed.
local function first_due(k)
  local first = redis.call('ZRANGE', k.delayed, 0, 0, 'WITHSCORES')
  return first[2] and due_of_score(first[2]) or 0
end

-- A job whose key is not a hash (written over by something else) cannot be
-- run, nor hold a result: it fails here, alone; get_job shows it as corrupt.
local function fail_not_a_hash(k, base, id, job_key, now, maxlen)
  local reason = 'corrupt job: its key is a ' .. redis.call('TYPE', job_key).ok
    .. ', not a hash'
  redis.call('ZADD', base .. 'failed', now, id)
  emit(k.events, maxlen, 'failed', id, {'failed_reason', reason, 'attempts_made', '0'})
end

-- `promoted`: the caller promoted due jobs already (move_to_finished does it
-- before its retries, so they don't overtake jobs that were due first).
local function fetch_jobs(k, base, n, token_prefix, lock_ms, now, maxlen, limit_max, limit_ms,
                          promoted)
  -- k: wait, prioritized, pc, delayed, active, locks, meta, marker, events, limiter
  if not promoted then
    promote_due(k, base, now, maxlen)
  end

  local jobs = {}
  local meta = redis.call('HMGET', k.meta, 'paused', 'concurrency', 'limited_until',
    'group_concurrency', 'group_max', 'group_duration', 'groups')
  if meta[1] then
    -- Paused: nothing is taken, but due jobs still move to waiting on time, so
    -- the worker wakes at the next due time to promote it.
    return {first_due(k), jobs, 0}
  end
  local cap = tonumber(meta[2] or '0')
  if cap > 0 then
    local room = cap - redis.call('ZCARD', k.active)
    if n <= 0 then
      -- A report without a fetch may have freed slots that this worker won't use.
      if room > 0 then wake_if_work(k, base) end
      return {0, jobs, 0}
    end
    if room <= 0 then
      return {0, jobs, 0}  -- idle until a finishing job leaves a marker
    end
    if room < n then n = room end
  end
  if n <= 0 then
    return {0, jobs, 0}
  end
  local limited_until = tonumber(meta[3] or '0')
  if limited_until > now then
    return {0, jobs, limited_until - now}
  end
  if limit_max > 0 then
    redis.call('ZREMRANGEBYSCORE', k.limiter, '-inf', now - limit_ms)
    local room = limit_max - redis.call('ZCARD', k.limiter)
    if room <= 0 then
      local oldest = redis.call('ZRANGE', k.limiter, 0, 0, 'WITHSCORES')
      return {0, jobs, math.max(tonumber(oldest[2]) + limit_ms - now, 1)}
    end
    if room < n then n = room end
  end

  -- Without groups (meta `groups` is set once a group first has work; then one
  -- EXISTS tells whether any has work now), all from the wait list. With groups,
  -- at most half the batch from the wait list, the rest round-robin from the
  -- groups, then the wait list again if the groups had too little: neither
  -- side can starve the other.
  local ids = {}
  local group_free_at = nil
  local grouped = meta[7] ~= false
      and redis.call('EXISTS', base .. 'groups', base .. 'groups:limited') > 0
  if not grouped then
    take_plain(k, n, ids)
  else
    take_plain(k, math.ceil(n / 2), ids)
    local limited_free_at = release_limited_groups(base, now)
    group_free_at = take_grouped(base, n - #ids, ids, now, tonumber(meta[4] or '0'),
      tonumber(meta[5] or '0'), tonumber(meta[6] or '1000'))
    if limited_free_at and (not group_free_at or limited_free_at < group_free_at) then
      group_free_at = limited_free_at
    end
    take_plain(k, n - #ids, ids)
  end

  local deadlines, locks, active_events = {}, {}, {}
  local deadline = now + lock_ms
  local pon = tostring(now)
  for _, id in ipairs(ids) do
    local job_key = base .. 'job:' .. id
    -- pcall: a key of another type must not abort the batch after the pops.
    local fields = redis.pcall('HGETALL', job_key)
    if fields.err then
      fail_not_a_hash(k, base, id, job_key, now, maxlen)
    elseif #fields > 0 then
      local started, made = 1, '0'
      for j = 1, #fields, 2 do
        local f = fields[j]
        -- A count that is not one (a corrupt hash) counts as 0: the token
        -- stays parseable, and the worker fails the job for its bad field.
        if f == 'ats' then
          started = (tonumber(string.match(fields[j + 1], '^%d+$')) or 0) + 1
        elseif f == 'atm' then
          made = string.match(fields[j + 1], '^%d+$') or '0'
        end
      end
      local token = token_prefix .. started .. ':' .. made .. ':' .. pon
      -- The reply carries the attempt's facts too: later duplicates win.
      local m = #fields
      fields[m + 1], fields[m + 2] = 'tok', token
      fields[m + 3], fields[m + 4] = 'pon', pon
      fields[m + 5], fields[m + 6] = 'ats', tostring(started)
      deadlines[#deadlines + 1] = deadline
      deadlines[#deadlines + 1] = id
      locks[#locks + 1] = id
      locks[#locks + 1] = token
      active_events[#active_events + 1] = {id}
      jobs[#jobs + 1] = {id, fields}
    end
  end
  call_chunked({'ZADD', k.active}, deadlines)
  call_chunked({'HSET', k.locks}, locks)
  if limit_max > 0 and #jobs > 0 then
    local starts = {}
    for i = 1, #locks, 2 do
      starts[#starts + 1] = now
      starts[#starts + 1] = locks[i] .. '@' .. locks[i + 1]  -- id@token: one per attempt
    end
    call_chunked({'ZADD', k.limiter}, starts)
  end
  emit_many(k.events, maxlen, 'active', active_events)

  -- More may be ready: leave a marker so another idle worker wakes too (unless
  -- the global cap is reached: then a finishing job leaves it).
  if #ids == n and (cap == 0 or redis.call('ZCARD', k.active) < cap) then
    wake_if_work(k, base, grouped)
  end

  local next_due = 0
  if #jobs == 0 then
    next_due = first_due(k)
    -- A rate-limited group is like a delayed job: look again when it is free.
    if group_free_at and (next_due == 0 or group_free_at < next_due) then
      next_due = group_free_at
    end
  end
  return {next_due, jobs, 0, locks}
end
