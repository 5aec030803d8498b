-- Take up to `n` ready jobs into active for one worker. Shared by
-- move_to_active.lua and move_to_finished.lua (finish one batch, fetch the next
-- in the same round trip).
--
-- Order: due delayed jobs are promoted first; then the wait list (jobs without
-- a priority), then the prioritized zset (lowest priority number first).
-- Each taken job gets a lock token (see parse_token) in the locks hash and a
-- lock deadline (its score in active): one write of each per batch, so a job
-- costs a single HGETALL here. The job hash itself is not written until the
-- attempt ends. Returns {next_due, jobs} where jobs is a list of {id, HGETALL
-- of job + tok, pon, ats} and next_due is the earliest delayed due time when
-- nothing was taken (0 if none is delayed).

-- Promote due delayed jobs (at most 1000 per call) to the wait list or the
-- prioritized zset.
local function promote_due(k, base, now, maxlen)
  local due = redis.call('ZRANGEBYSCORE', k.delayed, '-inf', now, 'LIMIT', 0, 1000)
  if #due == 0 then
    return
  end
  redis.call('ZREM', k.delayed, unpack(due))
  local plain, waiting = {}, {}
  for _, id in ipairs(due) do
    local priority = tonumber(redis.call('HGET', base .. 'job:' .. id, 'prio') or '0')
    if priority == 0 then
      plain[#plain + 1] = id
    else
      local seq = redis.call('INCR', k.pc) % PRIORITY_SHIFT
      redis.call('ZADD', k.prioritized, priority * PRIORITY_SHIFT + seq, id)
    end
    waiting[#waiting + 1] = {id}
  end
  call_chunked({'RPUSH', k.wait}, plain)
  emit_many(k.events, maxlen, 'waiting', waiting)
  -- Wake idle workers too: this call may take fewer than were promoted.
  if redis.call('HEXISTS', k.meta, 'paused') == 0 then
    redis.call('ZADD', k.marker, 0, '0')
  end
end

local function fetch_jobs(k, base, n, token_prefix, lock_ms, now, maxlen)
  -- k: wait, prioritized, pc, delayed, active, locks, meta, marker, events
  promote_due(k, base, now, maxlen)

  local jobs = {}
  if n <= 0 or redis.call('HEXISTS', k.meta, 'paused') == 1 then
    return {0, jobs}
  end

  local ids = redis.call('LPOP', k.wait, n) or {}
  if #ids < n then
    local popped = redis.call('ZPOPMIN', k.prioritized, n - #ids)
    for i = 1, #popped, 2 do
      ids[#ids + 1] = popped[i]
    end
  end

  local deadlines, locks, active_events = {}, {}, {}
  local deadline = now + lock_ms
  local pon = tostring(now)
  for _, id in ipairs(ids) do
    local fields = redis.call('HGETALL', base .. 'job:' .. id)
    if #fields > 0 then
      local started, made = 1, '0'
      for j = 1, #fields, 2 do
        local f = fields[j]
        if f == 'ats' then
          started = tonumber(fields[j + 1]) + 1
        elseif f == 'atm' then
          made = fields[j + 1]
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
  emit_many(k.events, maxlen, 'active', active_events)

  if #ids == n then
    -- More may be ready: leave a marker so another idle worker wakes too.
    if redis.call('LLEN', k.wait) > 0 or redis.call('ZCARD', k.prioritized) > 0 then
      redis.call('ZADD', k.marker, 0, '0')
    end
  end

  local next_due = 0
  if #jobs == 0 then
    local first = redis.call('ZRANGE', k.delayed, 0, 0, 'WITHSCORES')
    if #first > 0 then
      next_due = tonumber(first[2])
    end
  end
  return {next_due, jobs}
end
