--[[ move_to_finished: a worker reports a batch of finished attempts, then takes
the next jobs in the same call (one round trip per job in steady state).

KEYS  1 wait  2 prioritized  3 pc  4 delayed  5 active  6 locks  7 meta  8 marker
      9 events  10 completed  11 failed  12 limiter
ARGV  1 key base  2 n to fetch  3 lock token prefix  4 lock duration ms
      5 events maxlen  6 limiter max starts (0: none)  7 limiter window ms
      8 number of outcomes m, then m outcomes of 6 or 8 fields:
        job id, lock token, kind, keep, extras, then by kind:
          "c" return value;  "f" reason, stacktrace entry, retry delay;
          "r"/"l" retry delay
      then the number of timing fields t, and t pairs: field, count (the
      worker's histogram of these attempts' wait and processing times).
      then the tokens of answered calls, their number, and this call's token
      ("" none): run again with its token (a resend after a lost reply), the
      call returns its first reply (statuses as they were, the jobs it took
      that it still holds) and changes nothing (includes/calls.lua).
      Every argument costs (Redis copies it into Lua): a completed job's
      outcome is 6. extras is "" or "<len parent>:<len dedup>:" followed by
      the parent job's key (a child of a flow), the deduplication key held until
      the job finishes, and the job's group, each possibly empty.
      kind "c" completed: return value (JSON)
      kind "f" failed: retry delay ms >= 0 retries when attempts remain, -1
               never retries (UnrecoverableError); delay 0: to the tail of
               the wait list, after the delayed jobs already due (they are
               promoted before any outcome is applied)
      kind "r" released: handed back unfinished (worker shutdown); back to the
               head of the wait list (of its group, or of its priority in
               the prioritized zset), no attempt counted
      kind "l" rate limited (RateLimitError): as "r", and the queue backs off:
               no worker fetches for `retry delay` ms (meta limited_until)
      keep = "count:age_ms" retention of the finished set (-1: no limit)
Returns {{status per outcome}, next_due, jobs, limit_wait, now} with next_due,
jobs and limit_wait as in move_to_active, and now the time (ms, Redis' clock)
stored as the finished jobs' finished_on.
A failed attempt is also appended to the job's `ath` (attempt history, see
includes/attempts.lua): a completed attempt writes nothing more, its start and
end are the job's own pon and fon.
  status 1 done, 0 lock lost (the job was taken over; nothing was changed)
Metrics: completed/failed counts of this minute, and the timing fields added
to this minute's histogram (includes/metrics.lua).
A job that fails for good with the option dead_letter_queue is forwarded there
(includes/dead_letter.lua). A flow child deleted as it fails (remove_on_fail) or
dropped from the failed set by retention no longer holds its parent, as a
removed child (includes/flows.lua).
Events: completed (one entry per batch), failed (no attempts left; or a fetched
job whose key is not a hash, see fetch_jobs), retrying, delayed, waiting, active
A completed event carries the return value if it is at most 4 KiB and the
batch's entry holds at most 64 KiB of values; else `return_value_bytes` (its
size) instead: the job hash has the value, and kept events must not grow
with large results.

The cancel marks of the attempts that ended go (forget_cancels in common.lua).

A completed job costs one HSET here: the lock check, lock release, active and
finished set updates and its event are one command each for the whole batch.
]]
--@include "common"
--@include "fetch_jobs"
--@include "metrics"
--@include "dead_letter"
--@include "flows"
--@include "calls"
--@include "attempts"

local base = ARGV[1]
local maxlen = ARGV[5]
local k = {wait = KEYS[1], prioritized = KEYS[2], pc = KEYS[3], delayed = KEYS[4],
           active = KEYS[5], locks = KEYS[6], meta = KEYS[7], marker = KEYS[8],
           events = KEYS[9], limiter = KEYS[12]}
local call = call_token()
local recorded = recorded_reply(base, call)
if recorded then
  local r = recorded
  return {r[1], r[2], taken_again(k, base, r[3]), r[4], r[5]}
end
local now = now_ms()
local statuses = {}
local EVENT_VALUE_LIMIT, EVENT_BATCH_LIMIT = 4096, 65536
local event_bytes = 0

-- Finished jobs are added to their set, and the set trimmed, once per batch.
local to_finish = {}   -- set key -> {score, id, score, id, ...}
local policies = {}    -- set key -> {keep string -> true}
local to_delete = {}   -- ids removed at once (keep "0:...")
local function finish(set_key, id, keep)
  if string.sub(keep, 1, 2) == '0:' then
    to_delete[#to_delete + 1] = id
    return
  end
  local members = to_finish[set_key]
  if not members then
    members = {}
    to_finish[set_key] = members
    policies[set_key] = {}
  end
  members[#members + 1] = now
  members[#members + 1] = id
  policies[set_key][keep] = true
end

-- A job that finished lets go of the deduplication key it holds (if it still does).
local function release_deduplication(base_key, key, id)
  if key ~= '' then
    local dkey = base_key .. 'de:' .. key
    if redis.call('GET', dkey) == id then
      redis.call('DEL', dkey)
    end
  end
end

-- extras -> parent key, deduplication key, group ("" each when absent)
local function unpack_extras(extras)
  if extras == '' then
    return '', '', ''
  end
  local lp, ld, rest = string.match(extras, '^(%d+):(%d+):(.*)$')
  lp, ld = tonumber(lp), tonumber(ld)
  return string.sub(rest, 1, lp), string.sub(rest, lp + 1, lp + ld), string.sub(rest, lp + ld + 1)
end

-- Jobs that fell due go first: a retry without backoff joins the queue after them.
promote_due(k, base, now, maxlen)

local metrics = new_metrics()
local m = tonumber(ARGV[8])
local ids, offsets = {}, {}
local o = 9
for i = 1, m do
  ids[i], offsets[i] = ARGV[o], o
  o = o + (ARGV[o + 2] == 'f' and 8 or 6)
end
local timings_at = o
local held = call_chunked({'HMGET', k.locks}, ids)

local released, completed = {}, {}
for i = 1, m do
  o = offsets[i]
  local id, token, kind, keep = ids[i], ARGV[o + 1], ARGV[o + 2], ARGV[o + 3]
  local value = ARGV[o + 5]  -- the return value, the reason, or a retry delay
  if held[i] ~= token then
    statuses[#statuses + 1] = 0
  else
    statuses[#statuses + 1] = 1
    released[#released + 1] = id
    local parent, dedup, group = unpack_extras(ARGV[o + 4])
    if group ~= '' then
      release_group_slot(base, group, k.marker)
    end
    local job_key = base .. 'job:' .. id
    local started, made, pon = parse_token(token)
    made = tonumber(made) + 1
    if kind == 'c' then
      redis.call('HSET', job_key, 'rv', value, 'fon', now, 'atm', made, 'ats', started,
        'pon', pon)
      metrics.c = metrics.c + 1
      if dedup ~= '' then
        release_deduplication(base, dedup, id)
      end
      if #value <= EVENT_VALUE_LIMIT and event_bytes + #value <= EVENT_BATCH_LIMIT then
        event_bytes = event_bytes + #value
        completed[#completed + 1] = {id, 'return_value', value, 'attempts_made', tostring(made)}
      else
        completed[#completed + 1] = {id, 'return_value_bytes', tostring(#value),
          'attempts_made', tostring(made)}
      end
      if parent ~= '' then
        flow_child_completed(parent, job_key, value, now, maxlen)
      end
      finish(KEYS[10], id, keep)
    elseif kind == 'f' then
      local job = redis.call('HMGET', job_key, 'att', 'prio', 'st', 'opts', 'ath')
      local attempts = tonumber(job[1] or '1') or 1
      local stack = bounded_list(job[3], ARGV[o + 6])
      local history = attempt_history(job[5], made, pon, now, value)
      redis.call('HSET', job_key, 'fr', value, 'st', stack, 'atm', made,
        'ats', started, 'pon', pon, 'ath', history)
      local retry_delay = tonumber(ARGV[o + 7])
      if retry_delay >= 0 and made < attempts then
        emit(k.events, maxlen, 'retrying', id,
          {'failed_reason', value, 'attempts_made', made, 'delay', retry_delay})
        if retry_delay > 0 then
          local due = push_delayed(k.delayed, k.marker, id, now + retry_delay)
          emit(k.events, maxlen, 'delayed', id, {'delay', due})
        else
          push_ready(k.wait, k.prioritized, k.pc, k.meta, k.marker, id,
            tonumber(job[2] or '0'), false)
          emit(k.events, maxlen, 'waiting', id, nil)
        end
      else
        redis.call('HSET', job_key, 'fon', now)
        metrics.f = metrics.f + 1
        release_deduplication(base, dedup, id)
        emit(k.events, maxlen, 'failed', id, {'failed_reason', value, 'attempts_made', made})
        forward_to_dead_letter(base, job_key, id, job[4], value, made, now, maxlen)
        if parent ~= '' then
          flow_child_failed(parent, job_key, job[4], value, now, maxlen)
          if string.sub(keep, 1, 2) == '0:' then  -- deleted at once: no retry can complete it
            flow_dependency_done(parent, job_key, now, maxlen)
          end
        end
        finish(KEYS[11], id, keep)
      end
    else
      -- Handed back unfinished: the attempt counts as started, not as made.
      if kind == 'l' then
        local until_ms = now + tonumber(value)
        if until_ms > tonumber(redis.call('HGET', k.meta, 'limited_until') or '0') then
          redis.call('HSET', k.meta, 'limited_until', until_ms)
        end
      end
      redis.call('HSET', job_key, 'ats', started)
      local priority = tonumber(redis.call('HGET', job_key, 'prio') or '0')
      push_ready(k.wait, k.prioritized, k.pc, k.meta, k.marker, id, priority, true, true)
      emit(k.events, maxlen, 'waiting', id, nil)
    end
  end
end

save_metrics(metrics, base, now, timings_at)
call_chunked({'ZREM', k.active}, released)
call_chunked({'HDEL', k.locks}, released)
forget_cancels(base, released)
emit_many(k.events, maxlen, 'completed', completed)
if #to_delete > 0 then
  delete_jobs(base, to_delete)
end
-- A completed child left its parent's dependencies already; a failed one may not have.
local function failed_children_gone(ids)
  flow_children_deleted(base, ids, now, maxlen)
end
for set_key, members in pairs(to_finish) do
  call_chunked({'ZADD', set_key}, members)
  for keep in pairs(policies[set_key]) do
    local sep = string.find(keep, ':', 1, true)
    trim_finished(set_key, base, tonumber(string.sub(keep, 1, sep - 1)),
      tonumber(string.sub(keep, sep + 1)), now,
      set_key == KEYS[11] and failed_children_gone or nil)
  end
end

local fetched = fetch_jobs(k, base, tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), now, maxlen,
  tonumber(ARGV[6]), tonumber(ARGV[7]), true)
record_reply(base, call, {statuses, fetched[1], fetched[4] or {}, fetched[3], now})
return {statuses, fetched[1], fetched[2], fetched[3], now}
