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
local held = call_chunked({'HMGET', KEYS[2]}, ids)
for n, id in ipairs(ids) do
  if held[n] == ARGV[2 * n + 1] then
    renew[#renew + 1] = deadline
    renew[#renew + 1] = id
  else
    lost[#lost + 1] = id
  end
end
call_chunked({'ZADD', KEYS[1], 'XX'}, renew)
return lost
