--[[ rate_limit: make every worker of the queue back off until now + ms (a
processor hit an external limit). An earlier back-off already running longer
is kept.

KEYS  1 meta
ARGV  1 ms
Returns the time (ms) until which the queue backs off.
]]
--@include "common"

local until_ms = now_ms() + tonumber(ARGV[1])
local current = tonumber(redis.call('HGET', KEYS[1], 'limited_until') or '0')
if until_ms > current then
  redis.call('HSET', KEYS[1], 'limited_until', until_ms)
  return until_ms
end
return current
