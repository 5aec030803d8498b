--[[ get_workers: the live workers of the queue, oldest first, start..end
inclusive (ranks of the `workers` zset once members whose entry expired are
dropped).

KEYS  1 workers
ARGV  1 key base  2 start  3 end
Returns {now ms, {{worker id, entry JSON, ms left of its ttl}, ...}}: the last
heartbeat was at now - (entry ttl - ms left).
Events: none
]]
--@include "common"

local base = ARGV[1]
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if redis.call('EXISTS', base .. 'worker:' .. id) == 0 then
    redis.call('ZREM', KEYS[1], id)
  end
end
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], ARGV[2], ARGV[3])) do
  local key = base .. 'worker:' .. id
  local entry = redis.pcall('GET', key)
  if entry and not entry.err then  -- a key of another type is no heartbeat
    out[#out + 1] = {id, entry, redis.call('PTTL', key)}
  end
end
return {now_ms(), out}
