-- Shared by the job scheduler scripts: making the job of one slot from a
-- scheduler's template, and withdrawing a job a scheduler made that has not
-- started. Needs common.lua (push_ready, push_delayed, delete_jobs, emit).
--
-- `k` holds the keys: wait, prioritized, pc, delayed, meta, marker, events.
-- A scheduler's job has the id `sched-<scheduler id>-<slot ms>`, so the job of
-- a slot is made once whoever makes it; its hash records `sch` (scheduler id)
-- and `slot` (ms).

local function scheduled_job_id(scheduler_id, slot)
  return 'sched-' .. scheduler_id .. '-' .. slot
end

-- The job of `slot`, due at `due` (ms): delayed until then, or ready now if
-- `due` <= now. `tpl` = {name, data, opts, prio, att, lifo} from the
-- scheduler's hash. Appends to `added` / `delayed_events` (for emit_many).
-- Returns the job id and whether it was made (false: it exists already).
local function make_scheduled_job(k, base, scheduler_id, tpl, slot, due, now,
                                  added, delayed_events)
  local job_id = scheduled_job_id(scheduler_id, slot)
  local job_key = base .. 'job:' .. job_id
  if redis.call('EXISTS', job_key) == 1 then
    return job_id, false
  end
  local opts = tpl.opts
  if due > now then
    -- as add(delay=) stores it: the worker's wait metric reads ts + delay
    local delay = '"delay":' .. (due - now)
    if opts == '{}' then
      opts = '{' .. delay .. '}'
    else
      opts = '{' .. delay .. ',' .. string.sub(opts, 2)
    end
  end
  local priority = tonumber(tpl.prio)
  local fields = {'name', tpl.name, 'data', tpl.data, 'opts', opts, 'ts', now,
                  'sch', scheduler_id, 'slot', slot}
  local state = priority ~= 0 and 'prioritized' or 'waiting'  -- as add_jobs's `state`
  if priority ~= 0 then
    fields[#fields + 1] = 'prio'
    fields[#fields + 1] = priority
  end
  if tpl.att ~= '1' then
    fields[#fields + 1] = 'att'
    fields[#fields + 1] = tpl.att
  end
  if string.find(opts, '"group"', 1, true) then
    local group = cjson.decode(opts).group
    if type(group) == 'string' then  -- push_ready reads it: the job joins its group
      fields[#fields + 1] = 'grp'
      fields[#fields + 1] = group
      mark_grouped(base)
      state = 'waiting'
    end
  end
  redis.call('HSET', job_key, unpack(fields))
  added[#added + 1] = {job_id, 'name', tpl.name}
  if due > now then
    due = push_delayed(k.delayed, k.marker, job_id, due)
    delayed_events[#delayed_events + 1] = {job_id, 'delay', tostring(due)}
  else
    push_ready(k.wait, k.prioritized, k.pc, k.meta, k.marker, job_id, priority,
      tpl.lifo == '1')
    added[#added][4], added[#added][5] = 'state', state
  end
  return job_id, true
end

-- The template of a scheduler's jobs, read from its hash.
local function scheduler_template(hash_key)
  local t = redis.call('HMGET', hash_key, 'name', 'data', 'opts', 'prio', 'att', 'lifo')
  return {name = t[1], data = t[2], opts = t[3], prio = t[4], att = t[5], lifo = t[6]}
end

-- Whether the job has not started: delayed, waiting or prioritized.
local function not_started(k, job_id)
  return redis.call('ZSCORE', k.delayed, job_id)
    or redis.call('ZSCORE', k.prioritized, job_id)
    or redis.call('LPOS', k.wait, job_id)
end

-- Delete a scheduler's job if it has not started yet. Returns true if deleted.
local function withdraw_scheduled_job(k, base, job_id, maxlen)
  if not job_id or job_id == '' or not not_started(k, job_id) then
    return false
  end
  redis.call('ZREM', k.delayed, job_id)
  redis.call('ZREM', k.prioritized, job_id)
  redis.call('LREM', k.wait, 0, job_id)
  delete_jobs(base, {job_id})
  emit(k.events, maxlen, 'removed', job_id, nil)
  return true
end

-- Whether job `id` is the job its scheduler made last (`pend`): a scheduler's
-- pending job, which remove refuses and drain and clean keep. Only scheduler
-- jobs have ids starting "sched-", so other jobs cost nothing here.
local function scheduler_pending(base, id)
  if string.sub(id, 1, 6) ~= 'sched-' then
    return false
  end
  local sch = job_fields(base .. 'job:' .. id, 'sch')[1]
  return sch and redis.call('HGET', base .. 'scheduler:' .. sch, 'pend') == id
end

-- The pending job `id` of a scheduler was promoted: it runs now, so the
-- scheduler is due now and a worker's scheduler loop makes its next job at
-- once (the slot after the promoted one) instead of at the promoted job's slot.
local function scheduler_job_promoted(base, id, now)
  if not scheduler_pending(base, id) then
    return
  end
  local sch = redis.call('HGET', base .. 'job:' .. id, 'sch')  -- a hash: it was pending
  local skey = base .. 'scheduler:' .. sch
  if (redis.call('HGET', skey, 'nxt') or '') ~= '' then
    redis.call('HSET', skey, 'cur', now)
    redis.call('ZADD', base .. 'schedulers', now, sch)
    redis.call('ZADD', base .. 'schedulers-marker', 0, 'u')
  end
end

-- Take the schedulers' pending jobs out of `key` (the wait list when `list`:
-- only among its first `n`, the ones a drain batch pops; else a zset) for the
-- length of a drain batch; returns what put_back_scheduled needs.
local function set_aside_scheduled(base, key, list, n)
  local aside = {}
  for _, sch in ipairs(redis.call('ZRANGE', base .. 'schedulers', 0, -1)) do
    local pend = redis.call('HGET', base .. 'scheduler:' .. sch, 'pend')
    if pend and pend ~= '' then
      if list then
        if redis.call('LPOS', key, pend, 'MAXLEN', n) then
          redis.call('LREM', key, 1, pend)
          aside[#aside + 1] = pend
        end
      else
        local score = redis.call('ZSCORE', key, pend)
        if score then
          redis.call('ZREM', key, pend)
          aside[#aside + 1] = score
          aside[#aside + 1] = pend
        end
      end
    end
  end
  return aside
end

local function put_back_scheduled(key, list, aside)
  if #aside > 0 then
    -- A pending job waiting is ready: back to the head, where the drained jobs were.
    redis.call(list and 'LPUSH' or 'ZADD', key, unpack(aside))
  end
end
