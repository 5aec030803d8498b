--[[ update_progress: store a job's progress and announce it.

KEYS  1 events
ARGV  1 key base  2 job id  3 progress (JSON)  4 events maxlen
Returns 1, or 0 when the job does not exist.
Events: progress
]]
--@include "common"

local job_key = ARGV[1] .. 'job:' .. ARGV[2]
if redis.call('EXISTS', job_key) == 0 then
  return 0
end
redis.call('HSET', job_key, 'pr', ARGV[3])
emit(KEYS[1], ARGV[4], 'progress', ARGV[2], {'progress', ARGV[3]})
return 1
