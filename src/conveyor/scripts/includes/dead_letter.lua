-- Forwarding a job that failed for good into its dead-letter queue (the job
-- option dead_letter_queue): a new job in that queue (same Redis; its keys are
-- in another hash slot) with the same name and data, and `dlq` = where it
-- came from and why it failed. The failed job stays in its own failed set.
-- On a cluster the two queues must share a slot (a queue name with its own
-- hash tag, `{tag}name`): the add refuses a dead-letter queue that does not.

local function forward_to_dead_letter(base, job_key, id, opts_json, reason, made, now, maxlen)
  if not opts_json or not string.find(opts_json, 'dead_letter_queue', 1, true) then
    return
  end
  local read, opts = pcall(cjson.decode, opts_json)  -- corrupt opts: no forwarding
  local target = read and type(opts) == 'table' and opts.dead_letter_queue
  if type(target) ~= 'string' then
    return
  end
  local prefix, queue = queue_of_base(base)
  local other = queue_base(prefix, target)
  local new_id, new_key
  repeat
    new_id = tostring(redis.call('INCR', other .. 'id'))
    new_key = other .. 'job:' .. new_id
  until redis.call('EXISTS', new_key) == 0
  local job = redis.call('HMGET', job_key, 'name', 'data')
  local origin = cjson.encode({queue = queue, id = id, failed_reason = reason,
                               attempts_made = made, failed_on = now})
  redis.call('HSET', new_key, 'name', job[1] or '', 'data', job[2] or 'null', 'opts', '{}',
    'ts', now, 'dlq', origin)
  push_ready(other .. 'wait', other .. 'prioritized', other .. 'pc', other .. 'meta',
    other .. 'marker', new_id, 0, false)
  emit(other .. 'events', maxlen, 'added', new_id, {'name', job[1] or ''})
  emit(base .. 'events', maxlen, 'dead_lettered', id, {'queue', target, 'new_id', new_id})
end
