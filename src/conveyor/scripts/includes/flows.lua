-- Flows: what happens to a parent job when one of its children finishes or is
-- removed. Needs common.lua.
--
-- A parent waits in its queue's `waiting-children` zset; `job:<id>:dependencies`
-- (set) holds the job keys of its children not done yet, `job:<id>:processed`
-- (hash) child key -> return value JSON, `job:<id>:failed` (hash) child key ->
-- failed reason of a child whose failure was ignored (ignore_dependency_on_failure).
-- A child's hash holds `par`, its parent's job key. Parent and child may be in
-- different queues (same Redis, other hash slots): the parent's queue keys are
-- built from the parent's key.

-- `<prefix>:{<queue>}:job:<id>` (or `<prefix>:{<tag>}<rest>:job:<id>`) -> the
-- queue's key base, the job id (ids hold no ':').
local function flow_key_parts(job_key)
  return string.match(job_key, '^(.*:)job:([^:]+)$')
end

-- The parent's last child is done: from waiting-children to its queue's wait
-- list, prioritized or delayed zset, as its own options say (a delay counts
-- from now). Nothing if it is not waiting for children.
local function flow_release_parent(pbase, pid, pkey, now, maxlen)
  if redis.call('ZREM', pbase .. 'waiting-children', pid) == 0 then
    return
  end
  local job = redis.call('HMGET', pkey, 'prio', 'opts')
  local delay, lifo = 0, false
  local opts = job[2]
  if opts and (string.find(opts, '"delay"', 1, true) or string.find(opts, '"lifo"', 1, true)) then
    local decoded = cjson.decode(opts)
    delay = tonumber(decoded.delay or 0)
    lifo = decoded.lifo == true
  end
  if delay > 0 then
    local due = push_delayed(pbase .. 'delayed', pbase .. 'marker', pid, now + delay)
    emit(pbase .. 'events', maxlen, 'delayed', pid, {'delay', due})
  else
    push_ready(pbase .. 'wait', pbase .. 'prioritized', pbase .. 'pc', pbase .. 'meta',
      pbase .. 'marker', pid, tonumber(job[1] or '0'), lifo)
    emit(pbase .. 'events', maxlen, 'waiting', pid, nil)
  end
end

-- Child `child_key` is done (completed, ignored failure, removed): out of the
-- parent's dependencies, and the parent released if it was the last one.
local function flow_dependency_done(pkey, child_key, now, maxlen)
  local deps = pkey .. ':dependencies'
  if redis.call('SREM', deps, child_key) == 1 and redis.call('SCARD', deps) == 0 then
    local pbase, pid = flow_key_parts(pkey)
    flow_release_parent(pbase, pid, pkey, now, maxlen)
  end
end

-- Jobs `ids` of queue `base` are about to be deleted (drained, cleaned, dropped
-- by retention): each flow child among them leaves its parent's dependencies,
-- as a removed child does, so no parent waits for a job that is gone.
local function flow_children_deleted(base, ids, now, maxlen)
  for _, id in ipairs(ids) do
    local key = base .. 'job:' .. id
    local parent = redis.call('HGET', key, 'par')
    if parent then
      flow_dependency_done(parent, key, now, maxlen)
    end
  end
end

-- A child completed with return value `value` (JSON). A parent that is gone
-- (removed) is left alone.
local function flow_child_completed(pkey, child_key, value, now, maxlen)
  if redis.call('EXISTS', pkey) == 0 then
    return
  end
  redis.call('HSET', pkey .. ':processed', child_key, value)
  flow_dependency_done(pkey, child_key, now, maxlen)
end

-- A child failed for good (`opts`: its options JSON). fail_parent_on_failure:
-- the parent fails too (if it is waiting for children), and so on up the tree;
-- ignore_dependency_on_failure: the child counts as done and its failure is
-- recorded in the parent's `failed` hash; neither: the parent keeps waiting
-- (retrying the child can still complete it).
local flow_child_failed

local function flow_fail_parent(pkey, child_key, reason, now, maxlen)
  local pbase, pid = flow_key_parts(pkey)
  if redis.call('ZREM', pbase .. 'waiting-children', pid) == 0 then
    return
  end
  local cbase, cid = flow_key_parts(child_key)
  local why = 'child ' .. select(2, queue_of_base(cbase)) .. ':' .. cid .. ' failed: ' .. reason
  local job = redis.call('HMGET', pkey, 'par', 'opts', 'atm')
  redis.call('HSET', pkey, 'fr', why, 'fon', now)
  redis.call('ZADD', pbase .. 'failed', now, pid)
  emit(pbase .. 'events', maxlen, 'failed', pid,
    {'failed_reason', why, 'attempts_made', job[3] or '0'})
  if job[1] then
    flow_child_failed(job[1], pkey, job[2], why, now, maxlen)
  end
end

flow_child_failed = function(pkey, child_key, opts, reason, now, maxlen)
  if not opts or not string.find(opts, '_on_failure"', 1, true) then
    return
  end
  if redis.call('EXISTS', pkey) == 0 then
    return
  end
  local decoded = cjson.decode(opts)
  if decoded.fail_parent_on_failure == true then
    flow_fail_parent(pkey, child_key, reason, now, maxlen)
  elseif decoded.ignore_dependency_on_failure == true then
    redis.call('HSET', pkey .. ':failed', child_key, reason)
    flow_dependency_done(pkey, child_key, now, maxlen)
  end
end

-- A failed child is retried: if its parent had ignored its failure
-- (ignore_dependency_on_failure), the parent waits for it again, as BullMQ's.
local function flow_child_retried(job_key)
  local pkey = redis.call('HGET', job_key, 'par')
  if pkey and redis.call('HDEL', pkey .. ':failed', job_key) == 1
      and redis.call('EXISTS', pkey) == 1 then
    redis.call('SADD', pkey .. ':dependencies', job_key)
  end
end
