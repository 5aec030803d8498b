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
    push_delayed(k.delayed, k.marker, job_id, due)
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
