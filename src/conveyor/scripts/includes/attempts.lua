-- The attempt history of a job (field `ath` of its hash), and the bounded JSON
-- lists it shares with the stack traces (`st`).
--
-- ath  JSON list, oldest first, of the last ATTEMPTS_KEPT attempts that did not
--   complete: [attempt, started ms, ended ms, reason] for one that failed
--   (move_to_finished, or move_stalled_jobs past max_stalled_count), and
--   [attempt, started ms, detected ms, reason, "stalled"] for one whose lock
--   lapsed and that went back to the queue without counting (move_stalled_jobs),
--   and [attempt, started ms, ended ms, "", "completed"] for a completed attempt
--   of a job sent back to run again (retry_job, retry_jobs), whose own pon and
--   fon the retry clears.
--   The reason is cut to REASON_KEPT bytes on a UTF-8 character boundary. A
--   completed attempt is not written here: it is the job's own pon and fon.
--   Read by conveyor.inspection.attempts.

local ATTEMPTS_KEPT, REASON_KEPT = 10, 1024

-- The JSON list `raw` (nil: empty) with `entry` appended, its oldest entries
-- dropped past ATTEMPTS_KEPT, as JSON. A corrupt list restarts empty: it must
-- not fail the call that writes it.
local function bounded_list(raw, entry)
  local read, list = pcall(cjson.decode, raw or '[]')
  if not read or type(list) ~= 'table' then
    list = {}
  end
  list[#list + 1] = entry
  while #list > ATTEMPTS_KEPT do table.remove(list, 1) end
  return cjson.encode(list)
end

-- The first `n` bytes of `s`, never ending inside a UTF-8 character.
local function utf8_cut(s, n)
  if #s <= n then
    return s
  end
  while n > 0 and string.byte(s, n + 1) >= 128 and string.byte(s, n + 1) < 192 do
    n = n - 1
  end
  return string.sub(s, 1, n)
end

-- `raw` (the job's ath) with one attempt appended, as JSON; `outcome` is nil
-- for a failed attempt.
local function attempt_history(raw, attempt, started, ended, reason, outcome)
  local entry = {tonumber(attempt), tonumber(started), ended, utf8_cut(reason, REASON_KEPT)}
  if outcome then
    entry[5] = outcome
  end
  return bounded_list(raw, entry)
end

-- Before a retry clears a completed job's pon and fon: keep its completed
-- attempt in the history.
local function keep_completed_attempt(job_key)
  local f = redis.call('HMGET', job_key, 'atm', 'pon', 'fon', 'ath')
  if f[2] and f[3] then
    redis.call('HSET', job_key, 'ath',
      attempt_history(f[4], f[1] or '1', f[2], tonumber(f[3]), '', 'completed'))
  end
end
