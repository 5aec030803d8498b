--[[ obliterate: one step of Queue.obliterate, which deletes a queue and every
key it owns in bounded steps: "start", then "keys" for each batch of the
queue's keys that SCAN finds, then "finish".

"start" refuses while jobs are active (unless forced) and pauses the queue in
the same atomic step, so no job starts while the keys go. Forced, it also
deletes the active set and the locks at once: a worker still running one of
those jobs finds its lock gone when it reports, and writes nothing back.
"keys" deletes the keys given, except meta (it holds the pause); "finish"
deletes meta.

KEYS  1 meta  2 active  3 locks  4... ("keys" only) keys of the queue to delete
ARGV  1 step "start" | "keys" | "finish"  2 force "1"/"0"
Returns for "start" 1, or -1 when jobs are active and force is "0" (nothing
changed); for "keys" the number of keys deleted; for "finish" 1.
Events: none (the event stream is deleted with the rest).
]]

local step = ARGV[1]
if step == 'start' then
  if ARGV[2] ~= '1' and redis.call('ZCARD', KEYS[2]) > 0 then
    return -1
  end
  redis.call('HSET', KEYS[1], 'paused', '1')
  if ARGV[2] == '1' then
    redis.call('DEL', KEYS[2], KEYS[3])
  end
  return 1
elseif step == 'keys' then
  local deleted = 0
  for i = 4, #KEYS do
    if KEYS[i] ~= KEYS[1] then
      deleted = deleted + redis.call('DEL', KEYS[i])
    end
  end
  return deleted
elseif step == 'finish' then
  redis.call('DEL', KEYS[1])
  return 1
end
return redis.error_reply('obliterate: unknown step ' .. step)
