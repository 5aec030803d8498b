--[[ promote_jobs: one batch of Queue.promote_jobs: the delayed jobs due first
(in score order: due time, then order added) become ready now (wait list, or
prioritized when they have a priority).

KEYS  1 delayed  2 wait  3 prioritized  4 pc  5 meta  6 marker  7 events
ARGV  1 key base  2 most jobs to promote  3 events maxlen
Returns {jobs promoted, delayed jobs left}.
A job scheduler's pending job promoted makes its scheduler due now, as
promote_job does.
Events: waiting, one stream entry per batch.
]]
--@include "common"
--@include "admin"
--@include "job_scheduler"

local base = ARGV[1]
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
call_chunked({'ZREM', KEYS[1]}, ids)
local events = {}
local now = now_ms()
for i, id in ipairs(ids) do
  events[i] = {id}
  scheduler_job_promoted(base, id, now)
end
push_ready_many({wait = KEYS[2], prioritized = KEYS[3], pc = KEYS[4], meta = KEYS[5],
                 marker = KEYS[6]}, base, ids)
emit_many(KEYS[7], ARGV[3], 'waiting', events)
return {#ids, redis.call('ZCARD', KEYS[1])}
