--[[ add_flow: add trees of jobs (flows) atomically. A node with children waits
in its queue's `waiting-children` zset, with the set `job:<id>:dependencies`
of its children's job keys, until they are done (includes/flows.lua); a leaf
is ready (wait list, prioritized) or delayed at once, as add_jobs would put it.
Children carry `par` = their parent's job key. The queues of a flow may
differ: they must be on one Redis (their keys are in different hash slots).

KEYS  1..q  the `id` counter of each queue of the flow (`<base i>id`)
ARGV  1 events maxlen  2 number of queues q, then q key bases,
      then the number of nodes n, then n groups of 10, a parent before its
      children (depth first):
        parent node (1-based index into the nodes; 0 for a root), queue index
        (1..q), job id ("" to generate one from that queue's id counter),
        name, data (JSON), opts (JSON), delay ms, priority, lifo "1"/"0",
        attempts
      then the tokens of answered calls and their number, then this call's
      token ("" none; recorded under the first queue's key base): see
      includes/calls.lua. Run again with its token, a call returns its first
      run's reply.
Returns {timestamp, ids, created}: per node its job id and 1 added / 0 not
(its root's given id exists: that whole tree is left as it is, and the root's
id is returned for the root, "" for the others); or {-1, node index} when
a non-root node's given id exists in its queue: nothing is written.
Events (each queue's own stream): duplicated (a root whose id exists), added
(one entry per queue; a ready leaf
carries `state`, read as its waiting or prioritized event: see add_jobs),
waiting-children (nodes with children), delayed (delayed leaves).
]]
--@include "common"
--@include "calls"

local maxlen = ARGV[1]
local q = tonumber(ARGV[2])
local bases = {}
for i = 1, q do
  bases[i] = ARGV[2 + i]
end
local n = tonumber(ARGV[3 + q])
local function field(i, f)
  return ARGV[3 + q + (i - 1) * 10 + f]
end
local call = call_token()
local recorded = recorded_reply(bases[1], call)
if recorded then
  return recorded
end

-- Check every given id before anything is written.
local parents, queues, roots, ids, skipped, taken = {}, {}, {}, {}, {}, {}
for i = 1, n do
  parents[i] = tonumber(field(i, 1))
  queues[i] = tonumber(field(i, 2))
  roots[i] = parents[i] == 0 and i or roots[parents[i]]
  local id = field(i, 3)
  if id ~= '' and not skipped[roots[i]] then
    local key = bases[queues[i]] .. 'job:' .. id
    if redis.call('EXISTS', key) == 1 then
      if parents[i] ~= 0 then
        return {-1, i}
      end
      skipped[i] = true
    end
    taken[key] = true
    ids[i] = id
  end
end

local now = now_ms()
local keys, created, has_children = {}, {}, {}
for i = 1, n do
  if skipped[roots[i]] then
    ids[i] = parents[i] == 0 and ids[i] or ''
    created[i] = 0
  else
    created[i] = 1
    if parents[i] ~= 0 then
      has_children[parents[i]] = true
    end
    local base = bases[queues[i]]
    if not ids[i] then
      local id, key
      repeat
        id = tostring(redis.call('INCR', KEYS[queues[i]]))
        key = base .. 'job:' .. id
      until not taken[key] and redis.call('EXISTS', key) == 0
      taken[key] = true
      ids[i] = id
    end
    keys[i] = base .. 'job:' .. ids[i]
  end
end

local added, waiting_children, delayed_events, duplicated = {}, {}, {}, {}
for i = 1, q do
  added[i], waiting_children[i], delayed_events[i], duplicated[i] = {}, {}, {}, {}
end
for i = 1, n do
  if skipped[i] then
    duplicated[queues[i]][#duplicated[queues[i]] + 1] = {ids[i]}
  end
end
local dependencies = {}  -- parent index -> child keys
for i = 1, n do
  if created[i] == 1 then
    local qi, id, base = queues[i], ids[i], bases[queues[i]]
    local name, delay, priority = field(i, 4), tonumber(field(i, 7)), tonumber(field(i, 8))
    local fields = {'name', name, 'data', field(i, 5), 'opts', field(i, 6), 'ts', now}
    if priority ~= 0 then
      fields[#fields + 1] = 'prio'
      fields[#fields + 1] = priority
    end
    if field(i, 10) ~= '1' then
      fields[#fields + 1] = 'att'
      fields[#fields + 1] = field(i, 10)
    end
    local parent = parents[i]
    if parent ~= 0 then
      fields[#fields + 1] = 'par'
      fields[#fields + 1] = keys[parent]
      local deps = dependencies[parent]
      if not deps then
        deps = {}
        dependencies[parent] = deps
      end
      deps[#deps + 1] = keys[i]
    end
    redis.call('HSET', keys[i], unpack(fields))
    added[qi][#added[qi] + 1] = {id, 'name', name}
    if has_children[i] then
      redis.call('HSET', base .. 'meta', 'parents', '1')  -- see delete_jobs
      redis.call('ZADD', base .. 'waiting-children', now, id)
      waiting_children[qi][#waiting_children[qi] + 1] = {id}
    elseif delay > 0 then
      local due = push_delayed(base .. 'delayed', base .. 'marker', id, now + delay)
      delayed_events[qi][#delayed_events[qi] + 1] = {id, 'delay', tostring(due)}
    else
      push_ready(base .. 'wait', base .. 'prioritized', base .. 'pc', base .. 'meta',
        base .. 'marker', id, priority, field(i, 9) == '1')
      local entry = added[qi][#added[qi]]
      entry[4], entry[5] = 'state', priority ~= 0 and 'prioritized' or 'waiting'
    end
  end
end
for parent, deps in pairs(dependencies) do
  call_chunked({'SADD', keys[parent] .. ':dependencies'}, deps)
end
for i = 1, q do
  local events = bases[i] .. 'events'
  emit_many(events, maxlen, 'duplicated', duplicated[i])
  emit_many(events, maxlen, 'added', added[i])
  emit_many(events, maxlen, 'waiting-children', waiting_children[i])
  emit_many(events, maxlen, 'delayed', delayed_events[i])
end
record_reply(bases[1], call, {now, ids, created})
return {now, ids, created}
