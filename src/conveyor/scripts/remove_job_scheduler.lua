--[[ remove_job_scheduler: delete a job scheduler, and its job if that has not
started yet (a job already running or finished is left alone).

KEYS  1 schedulers  2 scheduler:<id>  3 wait  4 prioritized  5 delayed  6 events
ARGV  1 key base  2 events maxlen  3 scheduler id
Returns 1 removed, 0 no such scheduler.
Events: removed (the withdrawn job)
]]
--@include "common"
--@include "job_scheduler"

local k = {wait = KEYS[3], prioritized = KEYS[4], delayed = KEYS[5], events = KEYS[6]}
local pend = redis.call('HGET', KEYS[2], 'pend')
local removed = redis.call('ZREM', KEYS[1], ARGV[3])
if not pend and removed == 0 then
  return 0
end
withdraw_scheduled_job(k, ARGV[1], pend, ARGV[2])
redis.call('DEL', KEYS[2])
return 1
