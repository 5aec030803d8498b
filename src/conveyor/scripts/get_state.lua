--[[ get_state: the state a job is in, read atomically.

KEYS  1 completed  2 failed  3 delayed  4 active  5 prioritized  6 wait
      7 waiting-children
ARGV  1 key base  2 job id
Returns "completed" | "failed" | "delayed" | "active" | "prioritized" | "waiting"
| "waiting-children" (a parent of a flow, waiting for its children)
| "unknown" (the hash exists but no state holds it) | "" (no such job).
]]

local id = ARGV[2]
if redis.call('EXISTS', ARGV[1] .. 'job:' .. id) == 0 then
  return ''
end
local zsets = {'completed', 'failed', 'delayed', 'active', 'prioritized'}
for i, state in ipairs(zsets) do
  if redis.call('ZSCORE', KEYS[i], id) then
    return state
  end
end
if redis.call('LPOS', KEYS[6], id) then
  return 'waiting'
end
local group = redis.call('HGET', ARGV[1] .. 'job:' .. id, 'grp')
if group and redis.call('LPOS', ARGV[1] .. 'group:' .. group, id) then
  return 'waiting'
end
if redis.call('ZSCORE', KEYS[7], id) then
  return 'waiting-children'
end
return 'unknown'
