--[[ read_summaries: the fields of jobs that a list shows, each user-sized one
cut to a preview, so a page of big jobs costs Redis little to send (`data`,
`rv` and `st` are never read).

KEYS  1 locks
ARGV  1 key base  2 preview bytes (the most sent of `name`, `pr` and `fr`)
      3... job ids
Returns one reply per id, in order:
  0 when the job does not exist;
  its key's type ("string", "list", ...) when it is not a hash;
  else {name, ts, atm, opts, pon, fon, pr, fr, lock, name bytes, pr bytes, fr bytes}:
  name, pr and fr cut to the preview bytes (their whole lengths follow), lock
  the running attempt's token; a missing field is nil.
Events: none
]]

local base, most = ARGV[1], tonumber(ARGV[2])

local function preview(key, field)
  local n = redis.call('HSTRLEN', key, field)
  if n == 0 then  -- missing, or empty
    return redis.call('HGET', key, field), 0
  end
  local value = redis.call('HGET', key, field)
  if n > most then
    value = string.sub(value, 1, most)
  end
  return value, n
end

local out = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local key = base .. 'job:' .. id
  local kind = redis.call('TYPE', key).ok
  if kind == 'none' then
    out[#out + 1] = 0
  elseif kind ~= 'hash' then
    out[#out + 1] = kind
  else
    local f = redis.call('HMGET', key, 'ts', 'atm', 'opts', 'pon', 'fon')
    local name, name_n = preview(key, 'name')
    local pr, pr_n = preview(key, 'pr')
    local fr, fr_n = preview(key, 'fr')
    -- HMGET's and HGET's missing fields are false (a nil would end the table).
    out[#out + 1] = {name, f[1], f[2], f[3], f[4], f[5], pr, fr,
                     redis.call('HGET', KEYS[1], id), name_n, pr_n, fr_n}
  end
end
return out
