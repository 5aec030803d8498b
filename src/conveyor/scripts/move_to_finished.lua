--[[ move_to_finished: a worker reports a batch of finished attempts, then takes
the next jobs in the same call (one round trip per job in steady state).

KEYS  1 wait  2 prioritized  3 pc  4 delayed  5 active  6 meta  7 marker  8 events
      9 completed  10 failed
ARGV  1 key base  2 n to fetch  3 lock token prefix  4 lock duration ms
      5 events maxlen  6 number of outcomes m, then m groups of 7:
        job id, lock token, kind, value, stacktrace entry, retry delay, keep
      kind "c" completed: value = return value (JSON)
      kind "f" failed: value = reason; retry delay ms >= 0 retries when attempts
               remain, -1 never retries (UnrecoverableError)
      kind "r" released: handed back unfinished (worker shutdown); back to the
               head of the wait list, no attempt counted
      keep = "count:age_ms" retention of the finished set (-1: no limit)
Returns {{status per outcome}, next_due, jobs} with jobs as in move_to_active.
  status 1 done, 0 lock lost (the job was taken over; nothing was changed)
Events: completed, failed (no attempts left), retrying, delayed, waiting, active
]]
--@include "common"
--@include "fetch_jobs"

local base = ARGV[1]
local maxlen = ARGV[5]
local k = {wait = KEYS[1], prioritized = KEYS[2], pc = KEYS[3], delayed = KEYS[4],
           active = KEYS[5], meta = KEYS[6], marker = KEYS[7], events = KEYS[8]}
local now = now_ms()
local statuses = {}
local STACK_LIMIT = 10

-- Finished jobs are added to their set, and the set trimmed, once per batch.
local to_finish = {}   -- set key -> {score, id, score, id, ...}
local policies = {}    -- set key -> {keep string -> true}
local function finish(set_key, id, keep)
  if string.sub(keep, 1, 2) == '0:' then
    delete_job(base, id)
    return
  end
  local members = to_finish[set_key]
  if not members then
    members = {}
    to_finish[set_key] = members
    policies[set_key] = {}
  end
  members[#members + 1] = now
  members[#members + 1] = id
  policies[set_key][keep] = true
end

local left_active = {}
local m = tonumber(ARGV[6])
for i = 0, m - 1 do
  local o = 7 + i * 7
  local id, token, kind, value = ARGV[o], ARGV[o + 1], ARGV[o + 2], ARGV[o + 3]
  local job_key = base .. 'job:' .. id
  local held = redis.call('HMGET', job_key, 'tok', 'atm', 'att', 'prio')
  if held[1] ~= token then
    statuses[#statuses + 1] = 0
  else
    statuses[#statuses + 1] = 1
    left_active[#left_active + 1] = id
    redis.call('HDEL', job_key, 'tok')
    local made = tonumber(held[2] or '0') + 1
    if kind == 'c' then
      redis.call('HSET', job_key, 'rv', value, 'fon', now, 'atm', made)
      emit(k.events, maxlen, 'completed', id, {'return_value', value, 'attempts_made', made})
      finish(KEYS[9], id, ARGV[o + 6])
    elseif kind == 'f' then
      local attempts = tonumber(held[3] or '1')
      local stack = cjson.decode(redis.call('HGET', job_key, 'st') or '[]')
      stack[#stack + 1] = ARGV[o + 4]
      if #stack > STACK_LIMIT then table.remove(stack, 1) end
      redis.call('HSET', job_key, 'fr', value, 'st', cjson.encode(stack), 'atm', made)
      local retry_delay = tonumber(ARGV[o + 5])
      if retry_delay >= 0 and made < attempts then
        emit(k.events, maxlen, 'retrying', id,
          {'failed_reason', value, 'attempts_made', made, 'delay', retry_delay})
        if retry_delay > 0 then
          push_delayed(k.delayed, k.marker, id, now + retry_delay)
          emit(k.events, maxlen, 'delayed', id, {'delay', now + retry_delay})
        else
          local priority = tonumber(held[4] or '0')
          push_ready(k.wait, k.prioritized, k.pc, k.meta, k.marker, id, priority, false)
          emit(k.events, maxlen, 'waiting', id, nil)
        end
      else
        redis.call('HSET', job_key, 'fon', now)
        emit(k.events, maxlen, 'failed', id, {'failed_reason', value, 'attempts_made', made})
        finish(KEYS[10], id, ARGV[o + 6])
      end
    else
      local priority = tonumber(held[4] or '0')
      push_ready(k.wait, k.prioritized, k.pc, k.meta, k.marker, id, priority, true)
      emit(k.events, maxlen, 'waiting', id, nil)
    end
  end
end

-- unpack() has a limit on arguments: write in chunks.
local CHUNK = 2000
for i = 1, #left_active, CHUNK do
  redis.call('ZREM', k.active, unpack(left_active, i, math.min(i + CHUNK - 1, #left_active)))
end
for set_key, members in pairs(to_finish) do
  for i = 1, #members, CHUNK do
    redis.call('ZADD', set_key, unpack(members, i, math.min(i + CHUNK - 1, #members)))
  end
  for keep in pairs(policies[set_key]) do
    local sep = string.find(keep, ':', 1, true)
    trim_finished(set_key, base, tonumber(string.sub(keep, 1, sep - 1)),
      tonumber(string.sub(keep, sep + 1)), now)
  end
end

local fetched = fetch_jobs(k, base, tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), now, maxlen)
return {statuses, fetched[1], fetched[2]}
