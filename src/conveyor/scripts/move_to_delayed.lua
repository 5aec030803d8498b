--[[ move_to_delayed: a running job steps out until later (a step job). Its
worker's lock is checked and released; the attempt counts as started, not as
made; the job comes back with the same id (and data, see update_data.lua).
In the delayed zset it goes after the jobs already due in that ms
(delayed_score in common.lua).

KEYS  1 active  2 locks  3 delayed  4 marker  5 events
ARGV  1 key base  2 job id  3 lock token  4 delay ms  5 events maxlen
Returns the due time (ms), or 0 when the lock is not held (nothing changed).
Events: delayed
]]
--@include "common"

local base = ARGV[1]
local id = ARGV[2]
if redis.call('HGET', KEYS[2], id) ~= ARGV[3] then
  return 0
end
local started, _, pon = parse_token(ARGV[3])
redis.call('HSET', base .. 'job:' .. id, 'ats', started, 'pon', pon)
redis.call('ZREM', KEYS[1], id)
redis.call('HDEL', KEYS[2], id)
local due = push_delayed(KEYS[3], KEYS[4], id, now_ms() + tonumber(ARGV[4]))
emit(KEYS[5], ARGV[5], 'delayed', id, {'delay', due})
return due
