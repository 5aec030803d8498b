--[[ extend_locks: renew the locks of all of one worker's active jobs in one call.

KEYS  1 active
ARGV  1 key base  2 lock duration ms  3.. pairs of job id, lock token
Returns the ids whose lock was lost (the job was taken over or finished).
]]
--@include "common"

local base = ARGV[1]
local deadline = now_ms() + tonumber(ARGV[2])
local lost = {}
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', base .. 'job:' .. id, 'tok') == ARGV[i + 1] then
    redis.call('ZADD', KEYS[1], 'XX', deadline, id)
  else
    lost[#lost + 1] = id
  end
end
return lost
