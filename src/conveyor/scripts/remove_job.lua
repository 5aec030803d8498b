--[[ remove_job: delete a job and its logs from whatever state it is in.
An active job is refused while its lock is held (its worker still runs it).
A child of a flow leaves its parent's dependencies (the parent runs if it was
the last one). A parent's pending children (and theirs, in any queue) are
removed with it, unless ARGV 4 is "0": then they stay, and finish as jobs
without a parent. A deduplication key a removed job holds is let go (with or
without a ttl).

KEYS  1 wait  2 prioritized  3 delayed  4 active  5 completed  6 failed  7 events
      8 waiting-children
ARGV  1 key base  2 job id  3 events maxlen  4 remove pending children "1"/"0"
Returns 1 removed, 0 no such job, -1 active and locked, -2 a pending child
(or theirs) is active and locked: nothing is removed, -3 the job is a job
scheduler's pending job, not started (remove_job_scheduler removes both), as
BullMQ refuses.
Events: removed (each removed child on its own queue); waiting (on the
parent's queue: a parent whose last child this was)
]]
--@include "common"
--@include "flows"
--@include "removal"
--@include "job_scheduler"

local base = ARGV[1]
local id = ARGV[2]
if redis.call('EXISTS', base .. 'job:' .. id) == 0 then
  return 0
end
local deadline = redis.call('ZSCORE', KEYS[4], id)
if deadline and tonumber(deadline) > now_ms() then
  return -1
end
if scheduler_pending(base, id) and (redis.call('ZSCORE', KEYS[3], id)
    or redis.call('ZSCORE', KEYS[2], id) or redis.call('LPOS', KEYS[1], id)) then
  return -3
end
if ARGV[4] == '1' then
  local job_key, now = base .. 'job:' .. id, now_ms()
  if child_locked(job_key, now) then
    return -2
  end
  remove_pending_children(job_key, now, ARGV[3])
end
redis.call('LREM', KEYS[1], 0, id)
local group = job_fields(base .. 'job:' .. id, 'grp')[1]
if group then
  redis.call('LREM', base .. 'group:' .. group, 0, id)
  if redis.call('LLEN', base .. 'group:' .. group) == 0 then
    redis.call('ZREM', base .. 'groups', group)
  end
end
for i = 2, 6 do
  redis.call('ZREM', KEYS[i], id)
end
redis.call('ZREM', KEYS[8], id)
jobs_removed(base, {id}, now_ms(), ARGV[3])
delete_jobs(base, {id})
emit(KEYS[7], ARGV[3], 'removed', id, nil)
return 1
