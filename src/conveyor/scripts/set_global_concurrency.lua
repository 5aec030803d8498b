--[[ set_global_concurrency: cap the active jobs of the queue across all workers
(0 removes the cap). Raising or removing the cap wakes an idle worker when
work is ready.

KEYS  1 meta  2 marker  3 wait  4 prioritized
ARGV  1 cap (0: none)
Returns 1.
]]
local cap = tonumber(ARGV[1])
if cap > 0 then
  redis.call('HSET', KEYS[1], 'concurrency', cap)
else
  redis.call('HDEL', KEYS[1], 'concurrency')
end
if redis.call('HEXISTS', KEYS[1], 'paused') == 0
    and (redis.call('LLEN', KEYS[3]) > 0 or redis.call('ZCARD', KEYS[4]) > 0) then
  redis.call('ZADD', KEYS[2], 0, '0')
end
return 1
