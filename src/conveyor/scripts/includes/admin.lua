-- Helpers of the admin scripts (clean, drain, retry and promote in bulk);
-- push_ready_many is in common.lua.

-- One `removed` event (a single stream entry) for jobs removed from `state`.
local function emit_removed(events_key, maxlen, ids, state)
  local jobs = {}
  for i, id in ipairs(ids) do
    jobs[i] = {id, 'prev', state}
  end
  emit_many(events_key, maxlen, 'removed', jobs)
end
