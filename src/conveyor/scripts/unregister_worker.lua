--[[ unregister_worker: a worker that stops cleanly leaves the worker registry.

KEYS  1 workers
ARGV  1 key base  2 worker id
Returns 1 when the worker was registered, else 0.
Events: none
]]

redis.call('DEL', ARGV[1] .. 'worker:' .. ARGV[2])
return redis.call('ZREM', KEYS[1], ARGV[2])
