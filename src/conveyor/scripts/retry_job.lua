--[[ retry_job: send a finished (failed or completed) job back to run again.

KEYS  1 failed  2 completed  3 wait  4 prioritized  5 pc  6 meta  7 marker  8 events
ARGV  1 key base  2 job id  3 reset attempts made and started "1"/"0"  4 events maxlen
Returns 1 when requeued, 0 when the job does not exist, -1 when it is not
failed or completed.
A job whose key is not a hash (corrupt) goes back as it is: a worker fails it
again at once, saying why.
A flow child whose failure its parent ignored is pending for the parent again.
The job keeps its stalled count (stc), as in BullMQ: a retry does not
forgive stalls. A completed job's attempt is kept in its history (`ath`,
includes/attempts.lua) before its pon and fon are cleared.
Events: waiting
]]
--@include "common"
--@include "flows"
--@include "attempts"

local base = ARGV[1]
local id = ARGV[2]
local job_key = base .. 'job:' .. id
if redis.call('EXISTS', job_key) == 0 then
  return 0
end
local was_failed = redis.call('ZREM', KEYS[1], id) == 1
if not was_failed and redis.call('ZREM', KEYS[2], id) == 0 then
  return -1
end
local priority = 0
if redis.call('TYPE', job_key).ok == 'hash' then  -- else corrupt: a worker fails it again
  if not was_failed then
    keep_completed_attempt(job_key)
  end
  redis.call('HDEL', job_key, 'fon', 'pon', 'fr', 'rv')
  flow_child_retried(job_key)
  if ARGV[3] == '1' then
    redis.call('HSET', job_key, 'atm', 0, 'ats', 0)
  end
  priority = tonumber(redis.call('HGET', job_key, 'prio') or '0') or 0
end
push_ready(KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], id, priority, false)
emit(KEYS[8], ARGV[4], 'waiting', id, nil)
return 1
