--[[ run_job_scheduler_now: make one extra job from a job scheduler's template,
ready now ("run now" of the CLI and dashboard). The schedule is untouched: its
pending job stays due at its slot, and the extra job counts neither towards
`limit` nor in the jobs made. Its id is `sched-<scheduler id>-<now ms>`, so
two calls in the same millisecond make one job.

KEYS  1 scheduler:<id>  2 wait  3 prioritized  4 pc  5 delayed  6 meta  7 marker
      8 events
ARGV  1 key base  2 events maxlen  3 scheduler id
Returns {job id, 1 made / 0 it existed already}, or {"", 0}: no such scheduler.
Events: added, and waiting or prioritized (the job made).
]]
--@include "common"
--@include "job_scheduler"

local k = {wait = KEYS[2], prioritized = KEYS[3], pc = KEYS[4], delayed = KEYS[5],
           meta = KEYS[6], marker = KEYS[7], events = KEYS[8]}
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'', 0}
end
local now = now_ms()
local added, delayed_events = {}, {}
local job_id, made = make_scheduled_job(k, ARGV[1], ARGV[3], scheduler_template(KEYS[1]),
  tostring(now), now, now, added, delayed_events)
emit_many(k.events, ARGV[2], 'added', added)
return {job_id, made and 1 or 0}
