--[[ update_data: replace a job's data (a step job keeps its state there).

KEYS  1 job hash
ARGV  1 data (JSON)
Returns 1, or 0 when the job does not exist (nothing written).
]]
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'data', ARGV[1])
return 1
