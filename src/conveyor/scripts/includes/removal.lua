-- What deleting a job owes to others, for the scripts that remove jobs on
-- request (remove, cancel, drain, clean): its flow parent stops waiting for it
-- (flows.lua) and the deduplication key it holds is let go. Needs common.lua
-- and flows.lua. (Retention after a job finished keeps a ttl key: a throttle
-- window outlives the job, as BullMQ's does.)

-- Let go of the deduplication key that job `id` holds, if its options (`opts`
-- JSON) name one and the key still holds this job.
local function release_job_deduplication(base, id, opts)
  if not opts or not string.find(opts, '"deduplication"', 1, true) then
    return
  end
  local ok, decoded = pcall(cjson.decode, opts)
  local spec = ok and type(decoded) == 'table' and decoded.deduplication
  if type(spec) == 'table' and spec.id ~= nil then
    local dkey = base .. 'de:' .. tostring(spec.id)
    if redis.call('GET', dkey) == id then
      redis.call('DEL', dkey)
    end
  end
end

-- Jobs `ids` of queue `base` are about to be deleted on request.
local function jobs_removed(base, ids, now, maxlen)
  for _, id in ipairs(ids) do
    local key = base .. 'job:' .. id
    local job = job_fields(key, 'par', 'opts')
    if job[1] then
      flow_dependency_done(job[1], key, now, maxlen)
    end
    release_job_deduplication(base, id, job[2])
  end
end

-- Whether a pending descendant of parent `pkey` runs under a lock (at `now`).
local function child_locked(pkey, now)
  for _, child in ipairs(redis.call('SMEMBERS', pkey .. ':dependencies')) do
    local cbase, cid = flow_key_parts(child)
    local deadline = redis.call('ZSCORE', cbase .. 'active', cid)
    if (deadline and tonumber(deadline) > now) or child_locked(child, now) then
      return true
    end
  end
  return false
end

-- Remove the pending children of parent `pkey` (those it still waits for, in
-- any queue), and theirs, from whatever state they are in. Children that
-- completed, or whose failure was ignored, are done and stay.
local function remove_pending_children(pkey, now, maxlen)
  for _, child in ipairs(redis.call('SMEMBERS', pkey .. ':dependencies')) do
    local cbase, cid = flow_key_parts(child)
    if redis.call('EXISTS', child) == 1 then
      remove_pending_children(child, now, maxlen)
      local job = job_fields(child, 'grp', 'opts')
      redis.call('LREM', cbase .. 'wait', 0, cid)
      if job[1] then
        local list = cbase .. 'group:' .. job[1]
        redis.call('LREM', list, 0, cid)
        if redis.call('LLEN', list) == 0 then
          redis.call('ZREM', cbase .. 'groups', job[1])
        end
      end
      for _, part in ipairs({'prioritized', 'delayed', 'active', 'completed', 'failed',
                             'waiting-children'}) do
        redis.call('ZREM', cbase .. part, cid)
      end
      redis.call('HDEL', cbase .. 'locks', cid)
      release_job_deduplication(cbase, cid, job[2])
      delete_jobs(cbase, {cid})
      emit(cbase .. 'events', maxlen, 'removed', cid, nil)
    end
  end
end
