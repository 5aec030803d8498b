--[[ move_to_active: a worker takes up to n ready jobs (promoting due delayed jobs first).

KEYS  1 wait  2 prioritized  3 pc  4 delayed  5 active  6 locks  7 meta  8 marker
      9 events  10 limiter
ARGV  1 key base  2 n  3 lock token prefix (worker id + ":")  4 lock duration ms
      5 events maxlen  6 limiter max starts (0: none)  7 limiter window ms
      then the tokens of answered calls, their number, and this call's token
      ("" none): run again with its token (a resend after a lost reply), the
      call returns the jobs it took the first time instead of taking more
      (includes/calls.lua)
Returns {next_due, {{job_id, {field, value, ...}}, ...}, limit_wait}: the jobs
taken, each with its hash and the attempt's tok, pon and ats; next_due is the
earliest delayed job's due time (ms, also on a paused queue: its workers wake
then to promote it) when none was taken, else 0; limit_wait
> 0: rate limited, fetch again in that many ms (see includes/fetch_jobs.lua).
Events: waiting (promoted delayed jobs), active (one entry per batch), failed
(a job whose key is not a hash: it goes to the failed set, see fetch_jobs)
]]
--@include "common"
--@include "fetch_jobs"
--@include "calls"

local k = {wait = KEYS[1], prioritized = KEYS[2], pc = KEYS[3], delayed = KEYS[4],
           active = KEYS[5], locks = KEYS[6], meta = KEYS[7], marker = KEYS[8],
           events = KEYS[9], limiter = KEYS[10]}
local base = ARGV[1]
local call = call_token()
local recorded = recorded_reply(base, call)
if recorded then
  return {recorded[1], taken_again(k, base, recorded[2]), recorded[3]}
end
local reply = fetch_jobs(k, base, tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), now_ms(),
  ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]))
record_reply(base, call, {reply[1], reply[4] or {}, reply[3]})
return {reply[1], reply[2], reply[3]}
