--[[ upsert_job_scheduler: create or replace a job scheduler and make the job of
its first slot. Replacing withdraws the job the old schedule made if it has not
started yet (the same slot's job is made again from the new template). The
count of jobs made carries over when the schedule itself (spec) is unchanged,
so re-upserting at every deploy neither resets `limit` nor doubles a job.
Python computes the slots (cron needs a library); this script only writes.

KEYS  1 schedulers  2 scheduler:<id>  3 wait  4 prioritized  5 pc  6 delayed
      7 meta  8 marker  9 events  10 schedulers-marker
ARGV  1 key base  2 events maxlen  3 scheduler id  4 spec (JSON, canonical)
      5 job name  6 job data (JSON)  7 job opts (JSON)  8 priority  9 attempts
      10 lifo "1"/"0"  11 limit (0: none)  12 first slot ms ("": none, the
      schedule never fires)  13 the slot after it ("": none)
Returns {jobs made so far, id of the first slot's job or "", first slot or "",
generation}.
Events: removed (the withdrawn job), added, delayed (the first slot's job).
]]
--@include "common"
--@include "job_scheduler"

local k = {wait = KEYS[3], prioritized = KEYS[4], pc = KEYS[5], delayed = KEYS[6],
           meta = KEYS[7], marker = KEYS[8], events = KEYS[9]}
local base, maxlen, id, spec = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local limit = tonumber(ARGV[11])
local first, following = ARGV[12], ARGV[13]

local old = redis.call('HMGET', KEYS[2], 'spec', 'cnt', 'pend', 'gen')
local cnt = 0
if old[1] == spec then
  cnt = tonumber(old[2] or '0')
end
if withdraw_scheduled_job(k, base, old[3], maxlen) and old[1] == spec and cnt > 0 then
  cnt = cnt - 1  -- that job no longer counts as made
end
local gen = tonumber(old[4] or '0') + 1
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'spec', spec, 'name', ARGV[5], 'data', ARGV[6], 'opts', ARGV[7],
  'prio', ARGV[8], 'att', ARGV[9], 'lifo', ARGV[10], 'gen', gen)

local now = now_ms()
local added, delayed_events = {}, {}
local cur, nxt, pend = '', '', ''
if first ~= '' and (limit == 0 or cnt < limit) then
  local made
  pend, made = make_scheduled_job(k, base, id, scheduler_template(KEYS[2]), first,
    tonumber(first), now, added, delayed_events)
  if made then
    cnt = cnt + 1
  end
  cur, nxt = first, following
  if limit > 0 and cnt >= limit then
    nxt = ''
  end
end
redis.call('HSET', KEYS[2], 'cur', cur, 'nxt', nxt, 'pend', pend, 'cnt', cnt)
redis.call('ZADD', KEYS[1], nxt == '' and '+inf' or cur, id)
redis.call('ZADD', KEYS[10], 0, 'u')
emit_many(k.events, maxlen, 'added', added)
emit_many(k.events, maxlen, 'delayed', delayed_events)
return {cnt, pend, cur, gen}
