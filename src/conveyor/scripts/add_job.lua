--[[ add_job: add one job to the queue, or return the existing job of that id.

KEYS  1 wait  2 prioritized  3 pc  4 delayed  5 meta  6 marker  7 events  8 id
ARGV  1 key base ("<prefix>:{<queue>}:")
      2 job id, "" to generate one (INCR of the id counter, skipping taken ids)
      3 name  4 data (JSON)  5 opts (JSON)  6 delay ms  7 priority  8 lifo "1"/"0"
      9 attempts  10 events maxlen
Returns {job_id, 1, timestamp} when added, {job_id, 0, 0} when a job with that id
already exists.
Events: added; delayed (delay > 0)
]]
--@include "common"

local base = ARGV[1]
local job_id = ARGV[2]
local job_key
if job_id == '' then
  repeat
    job_id = tostring(redis.call('INCR', KEYS[8]))
    job_key = base .. 'job:' .. job_id
  until redis.call('EXISTS', job_key) == 0
else
  job_key = base .. 'job:' .. job_id
  if redis.call('EXISTS', job_key) == 1 then
    return {job_id, 0, 0}
  end
end

local now = now_ms()
local delay = tonumber(ARGV[6])
local priority = tonumber(ARGV[7])
local maxlen = ARGV[10]
redis.call('HSET', job_key, 'name', ARGV[3], 'data', ARGV[4], 'opts', ARGV[5], 'ts', now,
  'prio', priority, 'att', ARGV[9], 'atm', 0, 'ats', 0)
emit(KEYS[7], maxlen, 'added', job_id, {'name', ARGV[3]})
if delay > 0 then
  push_delayed(KEYS[4], KEYS[6], job_id, now + delay)
  emit(KEYS[7], maxlen, 'delayed', job_id, {'delay', now + delay})
else
  push_ready(KEYS[1], KEYS[2], KEYS[3], KEYS[5], KEYS[6], job_id, priority, ARGV[8] == '1')
end
return {job_id, 1, now}
