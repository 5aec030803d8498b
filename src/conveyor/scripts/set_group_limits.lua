--[[ set_group_limits: the per-group limits of a queue (each group gets them):
at most `concurrency` running jobs per group, and at most `max` starts per
`duration` ms per group (0: no limit). Groups held back by a limit that was
lifted or raised go back into the rotation, and an idle worker is woken.

KEYS  1 meta  2 marker
ARGV  1 key base  2 field ("group_concurrency" or "group_limit")  3 value
      (concurrency n, or "max:duration"; "0" removes the limit)
Returns 1.
]]
--@include "common"

local base = ARGV[1]
-- Groups held back (`ids`, the members of `key`) rejoin the rotation if they
-- have work; the next fetch checks them against the new limits.
local function rotate_all_in(key, ids)
  redis.call('DEL', key)
  for _, g in ipairs(ids) do
    if redis.call('LLEN', base .. 'group:' .. g) > 0 then
      rotate_in(base, g)
    end
  end
end

if ARGV[2] == 'group_concurrency' then
  if ARGV[3] == '0' then
    redis.call('HDEL', KEYS[1], 'group_concurrency')
  else
    redis.call('HSET', KEYS[1], 'group_concurrency', ARGV[3])
  end
  rotate_all_in(base .. 'groups:busy', redis.call('SMEMBERS', base .. 'groups:busy'))
else
  if ARGV[3] == '0' then
    redis.call('HDEL', KEYS[1], 'group_max', 'group_duration')
  else
    local max, duration = string.match(ARGV[3], '^(%d+):(%d+)$')
    redis.call('HSET', KEYS[1], 'group_max', max, 'group_duration', duration)
  end
  rotate_all_in(base .. 'groups:limited', redis.call('ZRANGE', base .. 'groups:limited', 0, -1))
end
if redis.call('ZCARD', base .. 'groups') > 0 and redis.call('HEXISTS', KEYS[1], 'paused') == 0 then
  redis.call('ZADD', KEYS[2], 0, '0')
end
return 1
