--[[ change_delay: a delayed job's due time becomes now + delay (Job.change_delay).
It goes after the jobs already due in that ms (score: delayed_score in
common.lua). The wake-up marker is lowered if the job is now due before every
other.

KEYS  1 delayed  2 marker  3 events
ARGV  1 key base  2 job id  3 delay ms  4 events maxlen
Returns the new due time (ms), 0 no such job, -1 the job is not delayed
(nothing changed).
Events: delayed (delay = the due time)
]]
--@include "common"

local base, id = ARGV[1], ARGV[2]
if redis.call('EXISTS', base .. 'job:' .. id) == 0 then
  return 0
end
if not redis.call('ZSCORE', KEYS[1], id) then
  return -1
end
local due = push_delayed(KEYS[1], KEYS[2], id, now_ms() + tonumber(ARGV[3]))
emit(KEYS[3], ARGV[4], 'delayed', id, {'delay', due})
return due
