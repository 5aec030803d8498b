--[[ clean_jobs: one bounded batch of Queue.clean: remove jobs of one state
whose time is at or before a cutoff (now - grace, fixed by the first batch).

The time compared is the finish time for completed and failed jobs (their
score), the time the attempt started for active jobs, and the time the job was
added (`ts`) for waiting, prioritized and delayed jobs. Only active jobs whose
lock has lapsed (their worker is gone: the stalled check would requeue them)
are removed; a job a worker still holds is never touched.

Finished sets are read by score, so each batch starts over from the oldest.
The other states are scanned from the end new jobs do not reach first (the
tail of the wait list, the highest scores of a zset; for active, the lapsed
locks in deadline order): the cursor counts the entries examined and kept, so
jobs taken from the other end meanwhile shift nothing we have yet to examine.

KEYS  1 the state's key  2 locks  3 cancels  4 events
ARGV  1 key base  2 state (completed, failed, waiting, prioritized, delayed,
      active)  3 cutoff ms ("" on the first batch: now - grace)  4 grace ms
      5 most jobs to remove in this batch  6 cursor (0 on the first batch)
      7 entries to examine per batch  8 events maxlen
A job is removed as remove_job removes one (includes/removal.lua): a flow
child leaves its parent's dependencies (a parent whose last child it was moves
on) and a deduplication key it holds is let go. A job scheduler's pending job
is kept (the schedule goes on; remove_job_scheduler stops it).
Returns {removed ids, next cursor (-1: done), cutoff}.
Events: removed (prev = the state), one stream entry per batch; waiting or
delayed (a released parent, on its queue).
]]
--@include "common"
--@include "admin"
--@include "flows"
--@include "removal"
--@include "job_scheduler"

local base, state = ARGV[1], ARGV[2]
local limit, cursor, scan = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local cutoff = tonumber(ARGV[3])
if not cutoff then
  cutoff = now_ms() - tonumber(ARGV[4])
end
local key = KEYS[1]
local removed = {}
local next_cursor = -1

local function added_on(id)
  return tonumber(job_fields(base .. 'job:' .. id, 'ts')[1] or '0') or 0
end

if state == 'completed' or state == 'failed' then
  removed = redis.call('ZRANGEBYSCORE', key, '-inf', cutoff, 'LIMIT', 0, limit)
  call_chunked({'ZREM', key}, removed)
  if #removed == limit then
    next_cursor = 0
  end
elseif state == 'waiting' then
  local window = redis.call('LRANGE', key, -(cursor + scan), -(cursor + 1))
  -- A job id never holds ':', so this placeholder is no job's.
  local TOMBSTONE = 'clean:removed'
  for i = #window, 1, -1 do
    if #removed >= limit then
      break
    end
    local id = window[i]
    if added_on(id) <= cutoff and not scheduler_pending(base, id) then
      redis.call('LSET', key, -(cursor + #window - i + 1), TOMBSTONE)
      removed[#removed + 1] = id
    end
  end
  if #removed > 0 then
    redis.call('LREM', key, -#removed, TOMBSTONE)
  end
  if #window == scan then
    next_cursor = cursor + #window - #removed
  end
elseif state == 'prioritized' or state == 'delayed' then
  local window = redis.call('ZREVRANGE', key, cursor, cursor + scan - 1)
  for _, id in ipairs(window) do
    if #removed >= limit then
      break
    end
    if added_on(id) <= cutoff and not scheduler_pending(base, id) then
      removed[#removed + 1] = id
    end
  end
  call_chunked({'ZREM', key}, removed)
  if #window == scan then
    next_cursor = cursor + #window - #removed
  end
elseif state == 'active' then
  local window = redis.call('ZRANGEBYSCORE', key, '-inf', now_ms() - 1, 'LIMIT', cursor, scan)
  for _, id in ipairs(window) do
    if #removed >= limit then
      break
    end
    local token = redis.call('HGET', KEYS[2], id)
    local started = token and select(3, parse_token(token))
    if tonumber(started or added_on(id)) <= cutoff then
      removed[#removed + 1] = id
    end
  end
  call_chunked({'ZREM', key}, removed)
  call_chunked({'HDEL', KEYS[2]}, removed)
  call_chunked({'HDEL', KEYS[3]}, removed)
  if #window == scan then
    next_cursor = cursor + #window - #removed
  end
else
  return redis.error_reply('clean_jobs: unknown state ' .. state)
end

jobs_removed(base, removed, now_ms(), ARGV[8])
delete_jobs(base, removed)
emit_removed(KEYS[4], ARGV[8], removed, state)
return {removed, next_cursor, cutoff}
