--[[ extend_locks: renew the locks of all of one worker's active jobs in one call,
and tell it which of them were cancelled (the fallback for a missed cancel
message; see cancel_job.lua).

KEYS  1 active  2 locks  3 cancels
ARGV  1 lock duration ms  2.. pairs of job id, lock token
Returns {lost ids, {id, reason, ...}}: the ids whose lock was lost (the job
was taken over or finished), and the held jobs cancelled, with their reasons.
]]
--@include "common"

local deadline = now_ms() + tonumber(ARGV[1])
local ids = {}
for i = 2, #ARGV, 2 do
  ids[#ids + 1] = ARGV[i]
end
local lost, renew, cancelled = {}, {}, {}
local held = call_chunked({'HMGET', KEYS[2]}, ids)
local cancels = {}
if redis.call('EXISTS', KEYS[3]) == 1 then
  cancels = call_chunked({'HMGET', KEYS[3]}, ids)
end
for n, id in ipairs(ids) do
  if held[n] == ARGV[2 * n + 1] then
    renew[#renew + 1] = deadline
    renew[#renew + 1] = id
    if cancels[n] then
      cancelled[#cancelled + 1] = id
      cancelled[#cancelled + 1] = cancels[n]
    end
  else
    lost[#lost + 1] = id
  end
end
call_chunked({'ZADD', KEYS[1], 'XX'}, renew)
return {lost, cancelled}
