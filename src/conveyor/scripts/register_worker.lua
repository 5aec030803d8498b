--[[ register_worker: a worker joins the queue's worker registry (its first
heartbeat, or one after its entry expired). Later heartbeats are one plain
`SET worker:<id> <entry> XX PX <ttl>` from the worker (one command: an idle
worker's budget is under one command per second), so an entry whose worker
dies expires on its own. The `workers` zset (score: when the worker
registered) orders the entries; registering also forgets members whose entry
has expired.

KEYS  1 workers
ARGV  1 key base  2 worker id  3 entry: a JSON object without "started"
      4 ttl ms  5 started ms ("": now)
Returns the started time (ms, Redis' clock), as written into the entry.
Events: none
]]
--@include "common"

local base, id = ARGV[1], ARGV[2]
for _, other in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if redis.call('EXISTS', base .. 'worker:' .. other) == 0 then
    redis.call('ZREM', KEYS[1], other)
  end
end
local started = tonumber(ARGV[5]) or now_ms()
local entry = '{"started":' .. started .. ',' .. string.sub(ARGV[3], 2)
redis.call('SET', base .. 'worker:' .. id, entry, 'PX', ARGV[4])
redis.call('ZADD', KEYS[1], started, id)
return started
