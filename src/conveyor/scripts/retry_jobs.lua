--[[ retry_jobs: one batch of Queue.retry_jobs: the oldest finished (failed or
completed) jobs that finished at or before a cutoff go back to run again, as
retry_job.lua does for one (a child's parent included). The cutoff (now, on the first batch) keeps a job
that fails again during the call from being retried twice by it.

KEYS  1 failed or completed  2 wait  3 prioritized  4 pc  5 meta  6 marker
      7 events
ARGV  1 key base  2 most jobs to move  3 cutoff ms ("" on the first batch: now)
      4 reset attempts made and started "1"/"0"  5 events maxlen
Returns {jobs moved (fewer than ARGV 2: none is left), cutoff}.
A completed job's attempt is kept in its history (`ath`,
includes/attempts.lua) before its pon and fon are cleared.
Events: waiting, one stream entry per batch.
]]
--@include "common"
--@include "admin"
--@include "flows"
--@include "attempts"

local base = ARGV[1]
local completed = string.sub(KEYS[1], -10) == ':completed'
local cutoff = tonumber(ARGV[3]) or now_ms()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, tonumber(ARGV[2]))
call_chunked({'ZREM', KEYS[1]}, ids)
local moved, corrupt, events = {}, {}, {}
for _, id in ipairs(ids) do
  local job_key = base .. 'job:' .. id
  local kind = redis.call('TYPE', job_key).ok
  if kind ~= 'hash' and kind ~= 'none' then
    corrupt[#corrupt + 1] = id  -- back as it is: a worker fails it again, saying why
    events[#events + 1] = {id}
  elseif kind == 'hash' then
    if completed then
      keep_completed_attempt(job_key)
    end
    redis.call('HDEL', job_key, 'fon', 'pon', 'fr', 'rv')
    flow_child_retried(job_key)
    if ARGV[4] == '1' then
      redis.call('HSET', job_key, 'atm', 0, 'ats', 0)
    end
    moved[#moved + 1] = id
    events[#events + 1] = {id}
  end
end
push_ready_many({wait = KEYS[2], prioritized = KEYS[3], pc = KEYS[4], meta = KEYS[5],
                 marker = KEYS[6]}, base, moved)
if #corrupt > 0 then  -- no priority or group can be read: plain waiting jobs
  call_chunked({'RPUSH', KEYS[2]}, corrupt)
  if redis.call('HEXISTS', KEYS[5], 'paused') == 0 then
    redis.call('ZADD', KEYS[6], 0, '0')
  end
end
emit_many(KEYS[7], ARGV[5], 'waiting', events)
return {#ids, cutoff}
