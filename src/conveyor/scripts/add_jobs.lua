--[[ add_jobs: add a batch of jobs (one for Queue.add, many for add_bulk); a job
whose id exists is not added and its existing id is returned.

KEYS  1 wait  2 prioritized  3 pc  4 delayed  5 meta  6 marker  7 events  8 id
ARGV  1 key base ("<prefix>:{<queue>}:")  2 events maxlen  3 number of jobs m,
      then m groups of 5:
        job id ("" to generate one: the id counter, skipping taken ids), name,
        data (JSON), opts (JSON), and the options the script acts on as one
        string, "" for the defaults (the usual job), else
        "delay ms:priority:lifo 1/0:attempts:group:deduplication" (group "" none,
        see push_grouped in common.lua; deduplication "ttl:extend:replace:key",
        "" none, ttl 0 = until the holding job finishes)
      then the tokens of answered calls and their number, then this call's
      token ("" none): see includes/calls.lua. A call that generates an id
      has a token: run again with it, it returns its first run's reply.
Returns one {job_id, 1, timestamp} (added) or {job_id, 0, 0} (exists, or the
deduplication key is held: job_id is the holder) per job, or {"", -1, error}
for a job Redis refused (e.g. WRONGTYPE on a key of its own: its deduplication
key, its group's list): the others of the batch are added all the same (so
concurrent adds batched together don't fail each other).
Events: added; delayed (delay > 0). Each is one entry for the whole batch.
An added job that is ready carries `state` ("waiting" or "prioritized"):
readers (conveyor._stream) expand it into that event, so the state costs no
second entry. duplicated (the id exists; one entry per batch).
deduplicated (job_id = the holder, deduplication_id, deduplicated_job_id = the
id of the job not added (its given id, else one from the id counter, as
BullMQ's), replaced "1"/"0").

Deduplication: the key `de:<key>` holds the id of the job that took it. It
is held while it exists and, without a ttl, while that job is unfinished
(the worker deletes it when the job finishes; a removed job lets it go too).

Delayed jobs: score = due * 1024 + the jobs already due that ms (FIFO; see
delayed_score in common.lua): one ZREVRANGEBYSCORE per distinct due time.

A job costs one HSET; the lists, sets, markers and events are written once
for the batch, and so are the id counter (one INCRBY for the ids the batch
generates; ids are taken from it in job order, as one INCR per job would) and
the check that the ids are free (one EXISTS over every key the batch may
make; only when some exists does each job check its own). The hash holds only
what differs from a job's defaults (priority 0, 1 attempt, none made or started).
The usual job of a batch (a generated id known free, default options) takes a
short path: no option parsing, no pcall of its own, its event and reply
record written as text at once.
]]
--@include "common"
--@include "calls"

local base = ARGV[1]
local maxlen = ARGV[2]
local m = tonumber(ARGV[3])
local W = 5  -- arguments per job
local call = call_token()
local recorded = recorded_reply(base, call)
if recorded then
  return recorded
end
local now = now_ms()
-- Lua turns a number into text with a floating-point sprintf ("%.14g"), which
-- costs more than the rest of an add: the timestamp is turned into text once,
-- and the ids (integers) with "%d", several times cheaper.
local now_text = string.format('%d', now)
local replies = {}
local added, delayed_events = {}, {}
local plain, prioritized, delayed = {}, {}, {}
local earliest_due = nil
local last_score = {}  -- due ms -> the last delayed score given to it (delayed_score)
local deduplicated, duplicated = {}, {}
local any_grouped = false

-- Ids from the counter: the batch's generated ids are reserved by one INCRBY
-- (the first time one is needed) and handed out in job order; past them
-- (an id found taken, skipped) one INCR each.
local generated = 0
local any_given = false
for i = 0, m - 1 do
  if ARGV[4 + i * W] == '' then
    generated = generated + 1
  else
    any_given = true
  end
end
local next_id, last_id = 1, 0
-- Reserved id -> its text, made once (see check_all_free); this and the tables
-- below are made for a batch only: a lone add does without (each costs Redis).
local reserved = m > 1 and {}
local function take_id()
  if next_id > last_id then
    if generated > 0 then
      last_id = redis.call('INCRBY', KEYS[8], generated)
      next_id = last_id - generated + 1
      generated = 0
    else
      return string.format('%d', redis.call('INCR', KEYS[8]))
    end
  end
  next_id = next_id + 1
  return reserved and reserved[next_id - 1] or string.format('%d', next_id - 1)
end

-- Whether a job key is taken. One EXISTS over every key this batch may make
-- (the given ids and the reserved ones: `probed`) answers for all when none
-- exists; `made` then holds the keys the batch has written since. When some
-- exists (or for an id past the reserved ones), each job asks Redis for its own.
-- (Only a given id can meet a key the batch made: generated ids are distinct.)
local made, probed = m > 1 and any_given and {}, m > 1 and {}
local none_existed = false
local function check_all_free()
  local probe = {}
  for i = 0, m - 1 do
    local job_id = ARGV[4 + i * W]
    if job_id ~= '' then
      probe[#probe + 1] = base .. 'job:' .. job_id
    end
  end
  if generated > 0 then
    take_id()  -- reserve the batch's ids now (and give the first back)
    next_id = next_id - 1
    for id = next_id, last_id do
      local text = string.format('%d', id)
      reserved[id] = text
      probe[#probe + 1] = base .. 'job:' .. text
    end
  end
  for _, key in ipairs(probe) do
    probed[key] = true
  end
  local found = 0
  for i = 1, #probe, 1000 do
    found = found + redis.call('EXISTS', unpack(probe, i, math.min(i + 999, #probe)))
    if found > 0 then
      return false
    end
  end
  return true
end
local function taken(job_key)
  if made and made[job_key] then
    return true
  end
  if none_existed and probed[job_key] then
    return false
  end
  return redis.call('EXISTS', job_key) == 1
end

-- The job holding deduplication `spec`'s key, if the key is held; a duplicate
-- may extend the key's ttl, or replace the holder's data and restart its delay.
local function dedup_holder(spec, data, delay, job_id)
  local ttl, extend, replace, key = string.match(spec, '^(%d+):([01]):([01]):(.*)$')
  local dkey = base .. 'de:' .. key
  local holder = redis.call('GET', dkey)
  if holder then
    local hkey = base .. 'job:' .. holder
    if ttl == '0' and (redis.call('EXISTS', hkey) == 0 or redis.call('HEXISTS', hkey, 'fon') == 1) then
      holder = false  -- finished or removed: the key is free
    end
  end
  if not holder then
    return nil, dkey, tonumber(ttl)
  end
  if extend == '1' then
    redis.call('PEXPIRE', dkey, ttl)
  end
  local replaced = '0'
  if replace == '1' then
    local hkey = base .. 'job:' .. holder
    if redis.call('ZSCORE', KEYS[4], holder) then
      redis.call('HSET', hkey, 'data', data)
      local score = delayed_score(KEYS[4], now + delay, last_score)
      redis.call('ZADD', KEYS[4], score, holder)
      redis.call('ZADD', KEYS[6], 'LT', due_of_score(score), 'd')
      replaced = '1'
    elseif redis.call('LPOS', KEYS[1], holder) or redis.call('ZSCORE', KEYS[2], holder) then
      redis.call('HSET', hkey, 'data', data)
      replaced = '1'
    end
  end
  if job_id == '' then
    job_id = take_id()
  end
  deduplicated[#deduplicated + 1] = {holder, 'deduplication_id', key,
    'deduplicated_job_id', job_id, 'replaced', replaced}
  return holder
end

-- One job at ARGV offset o: its reply appended to `replies`, its writes done
-- or gathered for the batch's lists below.
local function add_one(o)
  local job_id, name, spec = ARGV[o], ARGV[o + 1], ARGV[o + 4]
  local delay, priority, lifo, attempts, group, dedup = 0, 0, '0', '1', '', ''
  if spec ~= '' then
    local d, p
    d, p, lifo, attempts, group, dedup = string.match(spec,
      '^(%d+):(%d+):([01]):(%d+):([^:]*):(.*)$')
    if not d then
      error('malformed job options: ' .. spec)
    end
    delay, priority = tonumber(d), tonumber(p)
  end
  local job_key
  local exists = false
  local holder, dedup_key, dedup_ttl = nil, nil, 0
  if dedup ~= '' then
    holder, dedup_key, dedup_ttl = dedup_holder(dedup, ARGV[o + 2], delay, job_id)
  end
  if holder then
    job_id = holder
    exists = true
  elseif job_id == '' then
    repeat
      job_id = take_id()
      job_key = base .. 'job:' .. job_id
    until not taken(job_key)
  else
    job_key = base .. 'job:' .. job_id
    exists = taken(job_key)
    if exists then
      duplicated[#duplicated + 1] = {job_id}
    end
  end
  if exists then
    replies[#replies + 1] = {job_id, 0, 0}
  else
    local fields = {'name', name, 'data', ARGV[o + 2], 'opts', ARGV[o + 3], 'ts', now_text}
    if priority ~= 0 then
      fields[#fields + 1] = 'prio'
      fields[#fields + 1] = priority
    end
    if attempts ~= '1' then
      fields[#fields + 1] = 'att'
      fields[#fields + 1] = attempts
    end
    if group ~= '' then
      fields[#fields + 1] = 'grp'
      fields[#fields + 1] = group
      if not any_grouped then
        mark_grouped(base)
        any_grouped = true
      end
    end
    if made then
      made[job_key] = true  -- before the HSET: a job refused past it leaves its hash
    end
    redis.call('HSET', job_key, unpack(fields))
    if dedup_key then
      if dedup_ttl > 0 then
        redis.call('SET', dedup_key, job_id, 'PX', dedup_ttl)
      else
        redis.call('SET', dedup_key, job_id)
      end
    end
    local ready = delay <= 0 and (priority ~= 0 and group == '' and 'prioritized' or 'waiting')
    added[#added + 1] = ready and {job_id, 'name', name, 'state', ready} or {job_id, 'name', name}
    if delay > 0 then
      local score = delayed_score(KEYS[4], now + delay, last_score)
      local due = due_of_score(score)
      delayed[#delayed + 1] = score
      delayed[#delayed + 1] = job_id
      delayed_events[#delayed_events + 1] = {job_id, 'delay', tostring(due)}
      if not earliest_due or due < earliest_due then
        earliest_due = due
      end
    elseif group ~= '' then
      push_grouped(base, group, job_id, lifo == '1')
      plain.grouped = true
    elseif priority ~= 0 then
      prioritized[#prioritized + 1] = {job_id, priority}
    elseif lifo == '1' then
      -- LIFO: to the head now. Head and tail pushes commute, so the plain
      -- jobs appended after the loop end up exactly as if added one by one.
      redis.call('LPUSH', KEYS[1], job_id)
      plain.lifo = true
    else
      plain[#plain + 1] = job_id
    end
    replies[#replies + 1] = {job_id, 1, now}
  end
end

-- A job that Redis refuses (a key of its own holding the wrong type, say) gets
-- {"", -1, error} and its neighbours go on; writes it made before the error stay.
-- A refusal here (the id counter holding the wrong type) falls to each job's
-- own INCR, refused there.
-- A lone job checks its own key, as cheap as one EXISTS over it.
if m > 1 then
  local checked, all_free = pcall(check_all_free)
  none_existed = checked and all_free
end
-- A refusal by the server itself (a replica, out of memory, no replicas, a
-- cluster redirect, an ACL) is no one job's fault: the call fails with it as
-- any command would, so the client reacts (a sentinel or cluster connection
-- finds the new master). Only what one job's own keys cause fails that job.
local SERVER_REFUSALS = {
  READONLY = true, OOM = true, NOREPLICAS = true, MASTERDOWN = true, LOADING = true,
  BUSY = true, MISCONF = true, CLUSTERDOWN = true, MOVED = true, ASK = true,
  TRYAGAIN = true, CROSSSLOT = true, NOPERM = true,
}
local function refused(err)
  local message = type(err) == 'table' and err.err or tostring(err)
  if SERVER_REFUSALS[string.match(message, '^(%u+)') or ''] then
    return message
  end
  replies[#replies + 1] = {'', -1, message}
end

-- The usual job of a batch: a generated id among those reserved and known free,
-- the default options. Its record of the reply and its event are made here as
-- text (the id is digits, the name's JSON made once per name).
local records = {}  -- reply index -> its text in the call's record (else made below)
local name_json = {}
local job_prefix = base .. 'job:'
local function add_usual(o, job_id, job_key)
  local name = ARGV[o + 1]
  if made then
    made[job_key] = true
  end
  redis.call('HSET', job_key, 'name', name, 'data', ARGV[o + 2], 'opts', ARGV[o + 3],
    'ts', now_text)
  plain[#plain + 1] = job_id
  local named = name_json[name]
  if not named then
    named = cjson.encode(name)
    name_json[name] = named
  end
  added[#added + 1] = '{"job_id":"' .. job_id .. '","name":' .. named .. ',"state":"waiting"}'
  local n = #replies + 1
  replies[n] = {job_id, 1, now}
  if call ~= '' then
    records[n] = '["' .. job_id .. '",1,' .. now_text .. ']'
  end
end

-- Jobs from the first-th on. A usual job runs without a pcall of its own: only
-- the server can refuse the HSET of a key known to be free, and that fails the
-- call; `current` says which job an error came from.
local usual = m > 1 and none_existed
local current = 0
local function add_from(first)
  for i = first, m - 1 do
    current = i
    local o = 4 + i * W
    local job_key = nil
    if usual and ARGV[o] == '' and ARGV[o + 4] == '' and next_id <= last_id then
      job_key = job_prefix .. reserved[next_id]
      if made and made[job_key] then
        job_key = nil  -- a given id of this batch took it: the long path takes the next
      end
    end
    if job_key then
      next_id = next_id + 1
      add_usual(o, reserved[next_id - 1], job_key)
    else
      local ok, err = pcall(add_one, o)
      if not ok then
        local message = refused(err)
        if message then
          error({err = message})  -- the server's: fails the call (below); a table gets no position
        end
      end
    end
  end
end

if m == 1 then  -- a lone add (Queue.add with nothing else in flight): no batch machinery
  local ok, err = pcall(add_one, 4)
  local message = not ok and refused(err)
  if message then
    return redis.error_reply(message)  -- as the command replied it (error() would add a position)
  end
else
  local first = 0
  while first < m do
    local ok, err = pcall(add_from, first)
    if ok then
      break
    end
    local message = refused(err)
    if message then
      return redis.error_reply(message)
    end
    first = current + 1
  end
end

call_chunked({'RPUSH', KEYS[1]}, plain)
if #prioritized > 0 then
  local last = redis.call('INCRBY', KEYS[3], #prioritized)
  local members = {}
  for i, job in ipairs(prioritized) do
    members[#members + 1] = priority_score(job[2], last - #prioritized + i)
    members[#members + 1] = job[1]
  end
  call_chunked({'ZADD', KEYS[2]}, members)
end
call_chunked({'ZADD', KEYS[4]}, delayed)
if earliest_due then
  redis.call('ZADD', KEYS[6], 'LT', earliest_due, 'd')
end
if (#plain > 0 or plain.lifo or plain.grouped or #prioritized > 0)
    and redis.call('HEXISTS', KEYS[5], 'paused') == 0 then
  redis.call('ZADD', KEYS[6], 0, '0')
end
emit_many(KEYS[7], maxlen, 'added', added)
emit_many(KEYS[7], maxlen, 'delayed', delayed_events)
emit_many(KEYS[7], maxlen, 'duplicated', duplicated)
emit_many(KEYS[7], maxlen, 'deduplicated', deduplicated)
local encoded = nil
if call ~= '' then
  -- The record as cjson would write it, without its sprintf per number.
  local parts = {}
  for i, reply in ipairs(replies) do
    if records[i] then
      parts[i] = records[i]
    elseif reply[2] == 1 then
      parts[i] = '[' .. cjson.encode(reply[1]) .. ',1,' .. now_text .. ']'
    elseif reply[2] == 0 then
      parts[i] = '[' .. cjson.encode(reply[1]) .. ',0,0]'
    else
      parts[i] = cjson.encode(reply)
    end
  end
  encoded = '[' .. table.concat(parts, ',') .. ']'
end
record_reply(base, call, replies, encoded)
return replies
