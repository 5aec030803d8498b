--[[ set_paused: pause or resume a queue. While paused no job moves to active;
adds still land; due delayed jobs still move to waiting (a paused queue's
fetch promotes them and reports the next due time, so its idle workers wake
for it). Resuming wakes idle workers if work is ready, and sets the 'd'
marker to the earliest due time (ms, from the delayed score).

KEYS  1 meta  2 marker  3 wait  4 prioritized  5 delayed  6 events
ARGV  1 "pause" | "resume"  2 events maxlen
Returns 1.
Events: paused | resumed (job_id is empty)
]]
--@include "common"

if ARGV[1] == 'pause' then
  redis.call('HSET', KEYS[1], 'paused', '1')
  emit(KEYS[6], ARGV[2], 'paused', '', nil)
else
  redis.call('HDEL', KEYS[1], 'paused')
  if redis.call('LLEN', KEYS[3]) > 0 or redis.call('ZCARD', KEYS[4]) > 0 then
    redis.call('ZADD', KEYS[2], 0, '0')
  end
  local first = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
  if #first > 0 then
    redis.call('ZADD', KEYS[2], 'LT', due_of_score(first[2]), 'd')
  end
  emit(KEYS[6], ARGV[2], 'resumed', '', nil)
end
return 1
