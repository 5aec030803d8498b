--[[ change_priority: give a job a new priority (Job.change_priority). The job's
`prio` and the priority in its stored options are rewritten in any state; a
job that is ready (wait list or prioritized) moves to its new place at once:
the tail of its priority's jobs (the head of the wait list for priority 0 with
lifo). Others take the new priority when they next become ready.

KEYS  1 wait  2 prioritized  3 pc  4 meta  5 marker
ARGV  1 key base  2 job id  3 priority (0: none)  4 lifo "1"/"0"
Returns 1 changed, 0 no such job.
Events: none
]]
--@include "common"

local base, id = ARGV[1], ARGV[2]
local priority = tonumber(ARGV[3])
local job_key = base .. 'job:' .. id
local opts_json = redis.call('HGET', job_key, 'opts')
if not opts_json then
  return 0
end
if priority == 0 then
  redis.call('HDEL', job_key, 'prio')
else
  redis.call('HSET', job_key, 'prio', priority)
end
-- Stored options hold only what differs from the defaults (priority 0).
local opts = cjson.decode(opts_json)
opts.priority = priority ~= 0 and priority or nil
if next(opts) == nil then
  redis.call('HSET', job_key, 'opts', '{}')
else
  redis.call('HSET', job_key, 'opts', cjson.encode(opts))
end
local ready = redis.call('ZREM', KEYS[2], id) + redis.call('LREM', KEYS[1], 1, id)
if ready > 0 then
  push_ready(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], id, priority, ARGV[4] == '1')
end
return 1
