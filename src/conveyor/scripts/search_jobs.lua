--[[ search_jobs: one bounded step of a search through a state's jobs, newest
first, reading of each job only the fields its filters need; nothing written.

KEYS  1 the state's key (the wait list, or a state's sorted set)
ARGV  1 key base  2 "list" | "zset"
      3 cursor position (a zset's rank, a list's negative index; "" to start)
      4 cursor score (a zset's, as Redis wrote it)  5 cursor id ("" to start)
      6 most ids to examine  7 most matches  8 most bytes of fields to read
      9 filters, JSON: {name, reason, text (substrings; name and reason lower-
        cased), path (array of keys), value (what the path must hold),
        created_from, created_to, finished_from, finished_to (ms)}: each optional
      10 the wait list's cursor's next id (the one after it then; "" for none)
Returns {matches, more, position, score, id, next id, examined, total}: matches
  a flat list {id, score, id, score, ...} (score "" in the wait list); more 1
  while the state holds ids past the last one examined, whose position, score,
  id (and in the wait list the id after it) are the cursor to go on from, else
  0; total the state's size now.
Events: none
]]

local key, is_list = KEYS[1], ARGV[2] == 'list'
local base = ARGV[1]
local most_ids, most_matches = tonumber(ARGV[6]), tonumber(ARGV[7])
local most_bytes = tonumber(ARGV[8])
local f = cjson.decode(ARGV[9])
local total = is_list and redis.call('LLEN', key) or redis.call('ZCARD', key)

-- Is a after b byte by byte, as a sorted set orders ties (Lua's own < follows
-- the server's locale)?
local function bytes_after(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return #a > #b
end

-- Where the scan goes on: the cursor's job, found again where it may have moved.
local start
if ARGV[5] == '' then
  start = is_list and -1 or 0
elseif is_list then
  local pos = tonumber(ARGV[3])
  if redis.call('LINDEX', key, pos) == ARGV[5] then
    start = pos - 1
  else
    -- Adds to the tail shift a negative index; workers take from the head,
    -- which does not. Gone from the list: on from the job that was next to it,
    -- else from its index (that next job's now, if nothing was added).
    local found = redis.call('LPOS', key, ARGV[5], 'RANK', -1)
    if found then
      start = found - total - 1
    else
      found = ARGV[10] ~= '' and redis.call('LPOS', key, ARGV[10], 'RANK', -1)
      start = found and (found - total) or pos
    end
  end
else
  local rank = redis.call('ZREVRANK', key, ARGV[5])
  local score = rank and redis.call('ZSCORE', key, ARGV[5])
  if rank and tonumber(score) == tonumber(ARGV[4]) then
    start = rank + 1
  else
    -- Gone (or re-scored): after every job scored higher, and every one of the
    -- same score ordered before it (ties run in descending id order).
    start = redis.call('ZCOUNT', key, '(' .. ARGV[4], '+inf')
    local offset = 0
    while true do
      local ties = redis.call('ZREVRANGEBYSCORE', key, ARGV[4], ARGV[4], 'LIMIT', offset, 100)
      local newer = 0
      for _, id in ipairs(ties) do
        if bytes_after(id, ARGV[5]) then newer = newer + 1 end
      end
      start = start + newer
      if newer < 100 then break end
      offset = offset + 100
    end
  end
end

-- The window: at most most_ids ids from start, newest first, with their scores.
local window = {}
if is_list then
  local from = start - most_ids + 1
  if start >= -total then
    if from < -total then from = -total end
    local ids = redis.call('LRANGE', key, from, start)
    for i = #ids, 1, -1 do
      window[#window + 1] = {ids[i], ''}
    end
  end
else
  local flat = redis.call('ZREVRANGE', key, start, start + most_ids - 1, 'WITHSCORES')
  for i = 1, #flat, 2 do
    window[#window + 1] = {flat[i], flat[i + 1]}
  end
end

local function contains(haystack, needle, lower)
  if not haystack then return false end
  if lower then haystack = string.lower(haystack) end
  return string.find(haystack, needle, 1, true) ~= nil
end

local function within(ms, from, to)
  if from == nil and to == nil then return true end
  ms = tonumber(ms)
  if not ms then return false end
  return (from == nil or ms >= from) and (to == nil or ms < to)
end

-- The value at the path of the job's data (JSON), or nil.
local function at_path(data)
  local ok, node = pcall(cjson.decode, data)
  if not ok then return nil end
  for _, part in ipairs(f.path) do
    if type(node) ~= 'table' then return nil end
    local child = node[part]
    local index = tonumber(part)
    if child == nil and index and index >= 0 and index == math.floor(index) then
      child = node[index + 1]  -- arrays decode 1-based
    end
    node = child
  end
  return node
end

-- Costs: only the fields a filter reads are sized and read; bytes count the
-- user-sized ones (data and failed reason) against the request's budget.
local sized = {}
if f.name then sized[#sized + 1] = 'name' end
if f.reason then sized[#sized + 1] = 'fr' end
if f.text or f.path then sized[#sized + 1] = 'data' end
local timed = f.created_from or f.created_to or f.finished_from or f.finished_to

local matches, examined, spent, last = {}, 0, 0, nil
for i, entry in ipairs(window) do
  local id = entry[1]
  local job = base .. 'job:' .. id
  local cost = 0
  for _, field in ipairs(sized) do
    local n = redis.pcall('HSTRLEN', job, field)
    if type(n) == 'number' then cost = cost + n end
  end
  if examined > 0 and spent + cost > most_bytes then break end
  spent = spent + cost
  examined = examined + 1
  last = i
  local ok = true
  if timed then
    local t = redis.pcall('HMGET', job, 'ts', 'fon')
    ok = type(t) == 'table' and within(t[1], f.created_from, f.created_to)
      and within(t[2], f.finished_from, f.finished_to)
  end
  if ok and f.name then
    local v = redis.pcall('HGET', job, 'name')
    ok = type(v) == 'string' and contains(v, f.name, true)
  end
  if ok and f.reason then
    local v = redis.pcall('HGET', job, 'fr')
    ok = type(v) == 'string' and contains(v, f.reason, true)
  end
  if ok and (f.text or f.path) then
    local data = redis.pcall('HGET', job, 'data')
    ok = type(data) == 'string'
    if ok and f.text then ok = contains(data, f.text, false) end
    if ok and f.path then ok = at_path(data) == f.value end
  end
  if ok and not (sized[1] or timed) then
    ok = redis.call('EXISTS', job) == 1
  end
  if ok then
    matches[#matches + 1] = id
    matches[#matches + 1] = entry[2]
    if #matches >= 2 * most_matches then break end
  end
end

local more, position, score, id, next_id = 0, 0, '', '', ''
if last then
  local rest = start + #window < total  -- ids past the window
  if is_list then rest = start - #window >= -total end
  if last < #window or (#window == most_ids and rest) then
    more = 1
    position = is_list and (start - last + 1) or (start + last - 1)
    score, id = window[last][2], window[last][1]
    if is_list then
      next_id = window[last + 1] and window[last + 1][1]
        or redis.call('LINDEX', key, position - 1) or ''
    end
  end
end
return {matches, more, position, score, id, next_id, examined, total}
