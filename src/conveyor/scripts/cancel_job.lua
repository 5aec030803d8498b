--[[ cancel_job: cancel a job from anywhere. A waiting, prioritized or delayed
job is removed; a running one is marked in `cancels` and its worker told on the
`cancel` channel (workers also find the mark when they renew their locks, in
case they missed the message, or the user may not publish: a refused PUBLISH
is ignored); the worker then fails it for good. A job
removed here is removed as remove_job removes one (includes/removal.lua): its
flow parent stops waiting for it, its deduplication key is let go, and its
pending flow children (and theirs, in any queue) go with it; refused, as
remove_job refuses, while one of them runs under a lock.

KEYS  1 wait  2 prioritized  3 delayed  4 active  5 cancels  6 events
      7 waiting-children
ARGV  1 key base  2 job id  3 reason  4 events maxlen  5 cancel channel
Returns 1 removed (was not running), 2 running: its worker was told, 0 no such
job, -1 already finished, -2 a pending child (or theirs) is active and locked:
nothing is removed.
Events: removed (with reason) for a job that was not running; removed for each
pending child removed with it (on its own queue); waiting (on the parent's
queue: a parent whose last child this was).
]]
--@include "common"
--@include "flows"
--@include "removal"

local base = ARGV[1]
local id = ARGV[2]
local job_key = base .. 'job:' .. id
if redis.call('EXISTS', job_key) == 0 then
  return 0
end
if redis.call('ZSCORE', KEYS[4], id) then
  redis.call('HSET', KEYS[5], id, ARGV[3])
  -- pcall: a user without channel permissions (ACL) still cancels; its worker
  -- finds the mark at its next lock renewal instead of at once.
  redis.pcall('PUBLISH', ARGV[5], id)
  return 2
end
local group = redis.call('HGET', job_key, 'grp')
local waiting = redis.call('ZSCORE', KEYS[7], id) or redis.call('ZSCORE', KEYS[2], id)
  or redis.call('ZSCORE', KEYS[3], id) or redis.call('LPOS', KEYS[1], id)
  or (group and redis.call('LPOS', base .. 'group:' .. group, id))
if not waiting then
  return -1
end
local now = now_ms()
if child_locked(job_key, now) then
  return -2
end
remove_pending_children(job_key, now, ARGV[4])
if group then
  redis.call('LREM', base .. 'group:' .. group, 0, id)
  if redis.call('LLEN', base .. 'group:' .. group) == 0 then
    redis.call('ZREM', base .. 'groups', group)
  end
end
redis.call('LREM', KEYS[1], 0, id)
for _, key in ipairs({KEYS[2], KEYS[3], KEYS[7]}) do
  redis.call('ZREM', key, id)
end
jobs_removed(base, {id}, now, ARGV[4])  -- as remove_job: parent, deduplication key
delete_jobs(base, {id})
emit(KEYS[6], ARGV[4], 'removed', id, {'reason', ARGV[3]})
return 1
