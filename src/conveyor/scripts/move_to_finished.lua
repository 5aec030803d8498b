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

local function finish(set_key, job_key, id, keep)
  local sep = string.find(keep, ':', 1, true)
  local count = tonumber(string.sub(keep, 1, sep - 1))
  local age_ms = tonumber(string.sub(keep, sep + 1))
  if count == 0 then
    delete_job(base, id)
  else
    redis.call('ZADD', set_key, now, id)
    trim_finished(set_key, base, count, age_ms, now)
  end
end

local m = tonumber(ARGV[6])
for i = 0, m - 1 do
  local o = 7 + i * 7
  local id, token, kind, value = ARGV[o], ARGV[o + 1], ARGV[o + 2], ARGV[o + 3]
  local job_key = base .. 'job:' .. id
  if redis.call('HGET', job_key, 'tok') ~= token then
    statuses[#statuses + 1] = 0
  else
    statuses[#statuses + 1] = 1
    redis.call('ZREM', k.active, id)
    redis.call('HDEL', job_key, 'tok')
    if kind == 'c' then
      local made = redis.call('HINCRBY', job_key, 'atm', 1)
      redis.call('HSET', job_key, 'rv', value, 'fon', now)
      emit(k.events, maxlen, 'completed', id, {'return_value', value, 'attempts_made', made})
      finish(KEYS[9], job_key, id, ARGV[o + 6])
    elseif kind == 'f' then
      local made = redis.call('HINCRBY', job_key, 'atm', 1)
      local attempts = tonumber(redis.call('HGET', job_key, 'att') or '1')
      local stack = cjson.decode(redis.call('HGET', job_key, 'st') or '[]')
      stack[#stack + 1] = ARGV[o + 4]
      if #stack > STACK_LIMIT then table.remove(stack, 1) end
      redis.call('HSET', job_key, 'fr', value, 'st', cjson.encode(stack))
      local retry_delay = tonumber(ARGV[o + 5])
      if retry_delay >= 0 and made < attempts then
        emit(k.events, maxlen, 'retrying', id,
          {'failed_reason', value, 'attempts_made', made, 'delay', retry_delay})
        if retry_delay > 0 then
          push_delayed(k.delayed, k.marker, id, now + retry_delay)
          emit(k.events, maxlen, 'delayed', id, {'delay', now + retry_delay})
        else
          local priority = tonumber(redis.call('HGET', job_key, 'prio') or '0')
          push_ready(k.wait, k.prioritized, k.pc, k.meta, k.marker, id, priority, false)
          emit(k.events, maxlen, 'waiting', id, nil)
        end
      else
        redis.call('HSET', job_key, 'fon', now)
        emit(k.events, maxlen, 'failed', id, {'failed_reason', value, 'attempts_made', made})
        finish(KEYS[10], job_key, id, ARGV[o + 6])
      end
    else
      local priority = tonumber(redis.call('HGET', job_key, 'prio') or '0')
      push_ready(k.wait, k.prioritized, k.pc, k.meta, k.marker, id, priority, true)
      emit(k.events, maxlen, 'waiting', id, nil)
    end
  end
end

local fetched = fetch_jobs(k, base, tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), now, maxlen)
return {statuses, fetched[1], fetched[2]}
