--[[ add_log: append a line to a job's log, keeping the newest `keep` lines.

KEYS  1 job  2 job logs
ARGV  1 line  2 keep (0: keep all)
Returns the number of lines now kept, or -1 when the job does not exist.
]]

if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local logs_key = KEYS[2]
local n = redis.call('RPUSH', logs_key, ARGV[1])
local keep = tonumber(ARGV[2])
if keep > 0 and n > keep then
  redis.call('LTRIM', logs_key, -keep, -1)
  n = keep
end
return n
