--[[ run_job_scheduler_now: a scheduler makes one extra job now ("run now"),
from its template, ready at once. The schedule is left as it is: its next
slot, its pending job, its count of jobs made (so `limit` is not spent) and
its place in the schedulers zset do not change. The job's id is the one of a
slot at Redis' clock now, `sched-<scheduler id>-<now ms>`: called twice in one
millisecond, the second call finds the job made and makes none.

KEYS  1 scheduler:<id>  2 wait  3 prioritized  4 pc  5 delayed  6 meta
      7 marker  8 events
ARGV  1 key base  2 events maxlen  3 scheduler id
Returns {} when there is no such scheduler, else {job id, 1 made / 0 it
existed}. The scheduler's hash keeps the id in `man` (its last manual run).
Events: added.
]]
--@include "common"
--@include "job_scheduler"

if redis.call('EXISTS', KEYS[1]) == 0 then
  return {}
end
local k = {wait = KEYS[2], prioritized = KEYS[3], pc = KEYS[4], delayed = KEYS[5],
           meta = KEYS[6], marker = KEYS[7], events = KEYS[8]}
local now = now_ms()
local added, delayed_events = {}, {}
local job_id, made = make_scheduled_job(k, ARGV[1], ARGV[3], scheduler_template(KEYS[1]),
  tostring(now), now, now, added, delayed_events)
redis.call('HSET', KEYS[1], 'man', job_id)
emit_many(k.events, ARGV[2], 'added', added)
return {job_id, made and 1 or 0}
