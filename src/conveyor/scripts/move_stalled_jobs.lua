--[[ move_stalled_jobs: return jobs whose lock lapsed (their worker died or hung) to
the head of the wait list (of their group, or of their priority in the
prioritized zset), or fail them once they stalled more than allowed.
Runs at most once per interval across all workers (guarded by stalled-check).

KEYS  1 active  2 wait  3 prioritized  4 pc  5 meta  6 marker  7 events  8 failed
      9 stalled-check  10 locks
ARGV  1 key base  2 check interval ms  3 max stalled count  4 events maxlen
      5 failed retention "count:age_ms" of jobs whose opts set no remove_on_fail
Returns {{requeued ids}, {failed ids}}, or {} when another worker checked within
the interval.
A job failed here is forwarded to its dead_letter_queue, if it has one, tells
its parent (a child of a flow), and is kept or deleted by its own
remove_on_fail and lets go of the deduplication key it holds, as a job failing
for good in move_to_finished would. A job whose key is no longer a hash fails
at once (with a failed event), alone.
A stalled job's cancel mark goes with its attempt (forget_cancels), and the
attempt is added to its history (`ath`, includes/attempts.lua).
Events: stalled, failed
]]
--@include "common"
--@include "dead_letter"
--@include "flows"
--@include "attempts"

-- The options a failing job needs here, decoded only when they are set:
-- remove_on_fail (age in seconds) as "count:age_ms" (-1: no limit), else
-- `default`; and the deduplication key it holds until it finishes (no ttl),
-- else nil. Unreadable opts get the defaults: one corrupt job must not stop
-- the check for the others.
local function failing_options(opts_json, default)
  if not opts_json or not (string.find(opts_json, 'remove_on_fail', 1, true)
      or string.find(opts_json, 'deduplication', 1, true)) then
    return default, nil
  end
  local ok, opts = pcall(cjson.decode, opts_json)
  if not ok or type(opts) ~= 'table' then
    return default, nil
  end
  local keep, held = default, nil
  local r = opts.remove_on_fail
  if type(r) == 'table' then
    local count = type(r.count) == 'number' and r.count or -1
    local age = type(r.age) == 'number' and math.floor(r.age * 1000 + 0.5) or -1
    keep = string.format('%d:%d', count, age)
  end
  local d = opts.deduplication
  if type(d) == 'table' and type(d.id) == 'string' and type(d.ttl) ~= 'number' then
    held = d.id
  end
  return keep, held
end

local base = ARGV[1]
if not redis.call('SET', KEYS[9], '1', 'PX', ARGV[2], 'NX') then
  return {}
end
local now = now_ms()
local max_stalled = tonumber(ARGV[3])
local maxlen = ARGV[4]
local requeued, failed = {}, {}
local to_delete, policies = {}, {}  -- ids deleted at once; keep strings to trim by
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(ids) do
  local job_key = base .. 'job:' .. id
  redis.call('ZREM', KEYS[1], id)
  local token = redis.call('HGET', KEYS[10], id)
  redis.call('HDEL', KEYS[10], id)
  local kind = redis.call('TYPE', job_key).ok
  if kind ~= 'hash' and kind ~= 'none' then
    -- Written over by something else: fail it alone, as fetch_jobs does.
    local reason = 'corrupt job: its key is a ' .. kind .. ', not a hash'
    redis.call('ZADD', KEYS[8], now, id)
    emit(KEYS[7], maxlen, 'failed', id, {'failed_reason', reason, 'attempts_made', '0'})
    failed[#failed + 1] = id
  elseif kind == 'hash' then
    local started, made_before, pon
    if token then
      -- The attempt started and never ended: keep what the lock knew of it.
      started, made_before, pon = parse_token(token)
      redis.call('HSET', job_key, 'ats', started, 'pon', pon)
    end
    local group = redis.call('HGET', job_key, 'grp')
    if group then
      release_group_slot(base, group, KEYS[6])
    end
    local stalls = redis.call('HINCRBY', job_key, 'stc', 1)
    emit(KEYS[7], maxlen, 'stalled', id, {'stalled_count', stalls})
    local history = redis.call('HGET', job_key, 'ath')
    if stalls > max_stalled then
      local made = redis.call('HINCRBY', job_key, 'atm', 1)
      local reason = 'job stalled more than max_stalled_count (' .. max_stalled .. ') times'
      redis.call('HSET', job_key, 'fr', reason, 'fon', now)
      if token then
        redis.call('HSET', job_key, 'ath', attempt_history(history, made, pon, now, reason))
      end
      emit(KEYS[7], maxlen, 'failed', id, {'failed_reason', reason, 'attempts_made', made})
      local job = redis.call('HMGET', job_key, 'opts', 'par')
      forward_to_dead_letter(base, job_key, id, job[1], reason, made, now, maxlen)
      local keep, held = failing_options(job[1], ARGV[5])
      if job[2] then
        flow_child_failed(job[2], job_key, job[1], reason, now, maxlen)
        if string.sub(keep, 1, 2) == '0:' then  -- deleted at once: no retry can complete it
          flow_dependency_done(job[2], job_key, now, maxlen)
        end
      end
      if held and redis.call('GET', base .. 'de:' .. held) == id then
        redis.call('DEL', base .. 'de:' .. held)  -- as move_to_finished lets go of it
      end
      if string.sub(keep, 1, 2) == '0:' then
        to_delete[#to_delete + 1] = id
      else
        redis.call('ZADD', KEYS[8], now, id)
        policies[keep] = true
      end
      failed[#failed + 1] = id
    else
      if token then
        redis.call('HSET', job_key, 'ath', attempt_history(history, tonumber(made_before) + 1,
          pon, now, 'its worker stopped renewing the lock', 'stalled'))
      end
      local priority = tonumber(redis.call('HGET', job_key, 'prio') or '0')
      push_ready(KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], id, priority, true, true)
      requeued[#requeued + 1] = id
    end
  end
end
forget_cancels(base, ids)
if #to_delete > 0 then
  delete_jobs(base, to_delete)
end
for keep in pairs(policies) do
  local sep = string.find(keep, ':', 1, true)
  trim_finished(KEYS[8], base, tonumber(string.sub(keep, 1, sep - 1)),
    tonumber(string.sub(keep, sep + 1)), now, function(gone)
      flow_children_deleted(base, gone, now, maxlen)
    end)
end
return {requeued, failed}
