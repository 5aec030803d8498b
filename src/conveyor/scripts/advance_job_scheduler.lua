--[[ advance_job_scheduler: a scheduler whose last job fell due makes the next
ones. Any number of processes may call it for the same slot: it is a
compare-and-set on the scheduler's generation and stored next slot, so exactly
one call makes the jobs and the others get 0 (and job ids are per slot, so a
slot's job is never made twice either way).

Missed slots (no worker ran the scheduler while they passed) are the slots
from the stored next slot up to now; Python lists them (bounded) in ARGV 10...
run_all: one job per missed slot, ready at once. run_once: one job for all of
them (the first missed slot's id), unless the scheduler's last job has not
started yet: that job is still to run, and stands for the slots missed.

KEYS  1 schedulers  2 scheduler:<id>  3 wait  4 prioritized  5 pc  6 delayed
      7 meta  8 marker  9 events
ARGV  1 key base  2 events maxlen  3 scheduler id  4 expected generation
      5 expected next slot  6 missed policy "run_once"/"run_all"  7 limit (0:
      none)  8 the first slot after now ("": none)  9 the slot after that ("":
      none)  10... missed slots (ms, ascending)
Returns {0} when the scheduler changed or is gone (someone else advanced it,
an upsert replaced it), else {1, jobs made so far, ids of the jobs made...}.
Events: added, delayed.
]]
--@include "common"
--@include "job_scheduler"

local k = {wait = KEYS[3], prioritized = KEYS[4], pc = KEYS[5], delayed = KEYS[6],
           meta = KEYS[7], marker = KEYS[8], events = KEYS[9]}
local base, maxlen, id = ARGV[1], ARGV[2], ARGV[3]
local state = redis.call('HMGET', KEYS[2], 'gen', 'nxt', 'pend', 'cnt', 'cur')
if not state[1] or state[1] ~= ARGV[4] or state[2] ~= ARGV[5] or state[2] == '' then
  return {0}
end
local policy, limit = ARGV[6], tonumber(ARGV[7])
local future, following = ARGV[8], ARGV[9]
local cnt = tonumber(state[4])
local pend, cur = state[3], state[5]
local now = now_ms()
local tpl = scheduler_template(KEYS[2])
local added, delayed_events, made_ids = {}, {}, {}

local function make(slot, due)
  if limit > 0 and cnt >= limit then
    return
  end
  local job_id, made = make_scheduled_job(k, base, id, tpl, slot, due, now, added,
    delayed_events)
  if made then
    cnt = cnt + 1
    made_ids[#made_ids + 1] = job_id
  end
  pend, cur = job_id, slot
end

if #ARGV >= 10 then
  if policy == 'run_all' then
    for i = 10, #ARGV do
      make(ARGV[i], now)
    end
  elseif not not_started(k, pend) then
    make(ARGV[10], now)
  end
end
local nxt = ''
if future ~= '' and (limit == 0 or cnt < limit) then
  make(future, tonumber(future))
  nxt = following
end
if limit > 0 and cnt >= limit then
  nxt = ''
end
redis.call('HSET', KEYS[2], 'cur', cur, 'nxt', nxt, 'pend', pend, 'cnt', cnt)
redis.call('ZADD', KEYS[1], nxt == '' and '+inf' or cur, id)
emit_many(k.events, maxlen, 'added', added)
emit_many(k.events, maxlen, 'delayed', delayed_events)
return {1, cnt, unpack(made_ids)}
