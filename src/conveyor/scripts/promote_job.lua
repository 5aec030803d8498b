--[[ promote_job: one delayed job becomes ready now (Job.promote).

KEYS  1 delayed  2 wait  3 prioritized  4 pc  5 meta  6 marker  7 events
ARGV  1 key base  2 job id  3 events maxlen
Returns 1 promoted, 0 no such job, -1 the job is not delayed (nothing changed).
A job scheduler's pending job promoted makes its scheduler due now, so the next
job of the schedule is made at once (includes/job_scheduler.lua).
Events: waiting
]]
--@include "common"
--@include "job_scheduler"

local base, id = ARGV[1], ARGV[2]
local job_key = base .. 'job:' .. id
if redis.call('EXISTS', job_key) == 0 then
  return 0
end
if redis.call('ZREM', KEYS[1], id) == 0 then
  return -1
end
local priority = tonumber(redis.call('HGET', job_key, 'prio') or '0')
push_ready(KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], id, priority, false)
scheduler_job_promoted(base, id, now_ms())
emit(KEYS[7], ARGV[3], 'waiting', id, nil)
return 1
