--[[ drain: one bounded batch of Queue.drain: remove jobs that are ready to run
(the wait list, the prioritized zset, the groups' lists) and, when asked,
delayed ones.
Active, completed and failed jobs are never touched.

KEYS  1 wait  2 prioritized  3 delayed  4 events
ARGV  1 key base  2 delayed too "1"/"0"  3 most jobs to remove  4 events maxlen
Returns the number of jobs removed (fewer than ARGV 3: nothing is left).
A drained job is removed as remove_job removes one (includes/removal.lua): a
flow child leaves its parent's dependencies (a parent whose last child it was
moves on, after the batch is taken: it is not drained with its children) and a deduplication key it holds is let go. A job scheduler's pending
job stays (the schedule goes on; remove_job_scheduler stops it), as BullMQ's.
Events: removed (prev = waiting, prioritized or delayed), an entry per state;
waiting or delayed (a released parent, on its queue).
]]
--@include "common"
--@include "admin"
--@include "flows"
--@include "removal"
--@include "job_scheduler"

local base, n, maxlen = ARGV[1], tonumber(ARGV[3]), ARGV[4]
local now = now_ms()
local removed = 0
local taken = {}  -- {ids, state}: removed once the whole batch is taken

-- Jobs `ids` (in state `state`) leave the queue once the batch is taken.
local function take(ids, state)
  taken[#taken + 1] = {ids, state}
  removed = removed + #ids
end

local function take_zset(key, state)
  if removed >= n then
    return
  end
  local aside = set_aside_scheduled(base, key, false, 0)
  local popped = redis.call('ZPOPMIN', key, n - removed)
  put_back_scheduled(key, false, aside)
  local ids = {}
  for i = 1, #popped, 2 do
    ids[#ids + 1] = popped[i]
  end
  take(ids, state)
end

local aside = set_aside_scheduled(base, KEYS[1], true, n)
local waiting = redis.call('LPOP', KEYS[1], n) or {}
put_back_scheduled(KEYS[1], true, aside)
take(waiting, 'waiting')
take_zset(KEYS[2], 'prioritized')

-- Grouped jobs ready to run: each group's list, whether the group is in the
-- rotation, at its cap (busy) or at its rate limit.
local function take_groups()
  local groups = redis.call('ZRANGE', base .. 'groups', 0, -1)
  for _, g in ipairs(redis.call('SMEMBERS', base .. 'groups:busy')) do
    groups[#groups + 1] = g
  end
  for _, g in ipairs(redis.call('ZRANGE', base .. 'groups:limited', 0, -1)) do
    groups[#groups + 1] = g
  end
  for _, g in ipairs(groups) do
    if removed >= n then
      return
    end
    local list = base .. 'group:' .. g
    local ids = redis.call('LPOP', list, n - removed) or {}
    take(ids, 'waiting')
    if redis.call('LLEN', list) == 0 then
      redis.call('ZREM', base .. 'groups', g)
      redis.call('ZREM', base .. 'groups:limited', g)
      redis.call('SREM', base .. 'groups:busy', g)
    end
  end
end
take_groups()
if ARGV[2] == '1' then
  take_zset(KEYS[3], 'delayed')
end
for _, batch in ipairs(taken) do
  jobs_removed(base, batch[1], now, maxlen)
  delete_jobs(base, batch[1])
  emit_removed(KEYS[4], maxlen, batch[1], batch[2])
end
return removed
