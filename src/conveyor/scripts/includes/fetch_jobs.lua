-- Take up to `n` ready jobs into active for one worker. Shared by
-- move_to_active.lua and move_to_finished.lua (finish one batch, fetch the next
-- in the same round trip).
--
-- Order: due delayed jobs are promoted first; then the wait list (jobs without
-- a priority), then the prioritized zset (lowest priority number first).
-- Each taken job gets a lock token `token_prefix .. attempts_started` and a
-- lock deadline (its score in active). Returns {next_due, jobs} where jobs is
-- a list of {id, HGETALL of job} and next_due is the earliest delayed due time
-- when nothing was taken (0 if none is delayed).
local function fetch_jobs(k, base, n, token_prefix, lock_ms, now, maxlen)
  -- k: wait, prioritized, pc, delayed, active, meta, marker, events
  local due = redis.call('ZRANGEBYSCORE', k.delayed, '-inf', now, 'LIMIT', 0, 1000)
  if #due > 0 then
    redis.call('ZREM', k.delayed, unpack(due))
    for _, id in ipairs(due) do
      local priority = tonumber(redis.call('HGET', base .. 'job:' .. id, 'prio') or '0')
      push_ready(k.wait, k.prioritized, k.pc, k.meta, k.marker, id, priority, false)
      emit(k.events, maxlen, 'waiting', id, nil)
    end
  end

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

  local deadlines = {}
  for _, id in ipairs(ids) do
    local job_key = base .. 'job:' .. id
    local fields = redis.call('HGETALL', job_key)
    if #fields > 0 then
      local started = 1
      for j = 1, #fields, 2 do
        if fields[j] == 'ats' then
          started = tonumber(fields[j + 1]) + 1
          break
        end
      end
      local token = token_prefix .. started
      redis.call('HSET', job_key, 'tok', token, 'pon', now, 'ats', started)
      -- The reply carries the hash as it is now: later duplicates win.
      local n = #fields
      fields[n + 1], fields[n + 2] = 'tok', token
      fields[n + 3], fields[n + 4] = 'pon', tostring(now)
      fields[n + 5], fields[n + 6] = 'ats', tostring(started)
      deadlines[#deadlines + 1] = now + lock_ms
      deadlines[#deadlines + 1] = id
      emit(k.events, maxlen, 'active', id, nil)
      jobs[#jobs + 1] = {id, fields}
    end
  end
  for i = 1, #deadlines, 2000 do
    redis.call('ZADD', k.active, unpack(deadlines, i, math.min(i + 1999, #deadlines)))
  end

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
