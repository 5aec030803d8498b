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
    local job = redis.call('HMGET', key, 'par', 'opts')
    if job[1] then
      flow_dependency_done(job[1], key, now, maxlen)
    end
    release_job_deduplication(base, id, job[2])
  end
end
