--[[ extend_locks: renew the locks of all of one worker's active jobs in one call.

KEYS  1 active  2 locks
ARGV  1 lock duration ms  2.. pairs of job id, lock token
Returns the ids whose lock was lost (the job was taken over or finished).
]]
--@include "common"

local deadline = now_ms() + tonumber(ARGV[1])
local ids = {}
for i = 2, #ARGV, 2 do
  ids[#ids + 1] = ARGV[i]
end
local lost, renew = {}, {}
for i = 1, #ids, 2000 do
  local held = redis.call('HMGET', KEYS[2], unpack(ids, i, math.min(i + 1999, #ids)))
  for j = 1, #held do
    local n = i + j - 1
    if held[j] == ARGV[2 * n + 1] then
      renew[#renew + 1] = deadline
      renew[#renew + 1] = ids[n]
    else
      lost[#lost + 1] = ids[n]
    end
  end
end
for i = 1, #renew, 2000 do
  redis.call('ZADD', KEYS[1], 'XX', unpack(renew, i, math.min(i + 1999, #renew)))
end
return lost
