--[[ place_bid: decide one bid, atomically. Only an accepted bid changes anything.

KEYS  1 the auction's hash (auction:<id>)   2 the active index (auctions:active, zset id -> end ms)
ARGV  1 auction id   2 bidder id   3 amount in cents   4 bid id

The hash holds: status (active|ended), starting_cents, increment_cents,
current_cents, highest_bidder, highest_bid_id, total_bids, end_ms,
snipe_window_ms, extension_ms, extensions, and the last accepted bid's
last_bid_ms, last_previous, last_extended (to answer a retry of it).

Returns
  {1, now_ms, previous_cents ('' for the first bid), total_bids, end_ms, extended (0|1)}
  {-1, 'Auction not found'}
  {-2, 'Auction is not active'}            ended, or its end time has passed
  {-3, 'Bid too low', minimum_cents}       below the current bid plus the increment
  {-4, 'Already the highest bidder'}
The same bid id again (a client retrying after a lost reply) gets the same
answer while it is still the highest bid, so a retry never double-counts.
Anti-sniping: a bid accepted within snipe_window_ms of the end moves the end to
now + extension_ms (never earlier than it was), and keeps the active index in step.
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1, 'Auction not found'}
end
local last = redis.call('HMGET', KEYS[1], 'highest_bid_id', 'last_bid_ms', 'last_previous',
  'total_bids', 'end_ms', 'last_extended')
if last[1] == ARGV[4] then
  -- The client's retry of a call whose reply was lost: the same answer again.
  return {1, tonumber(last[2]), last[3], tonumber(last[4]), tonumber(last[5]),
    tonumber(last[6])}
end
local a = redis.call('HMGET', KEYS[1], 'status', 'starting_cents', 'increment_cents',
  'current_cents', 'highest_bidder', 'total_bids', 'end_ms', 'snipe_window_ms', 'extension_ms')
local end_ms = tonumber(a[7])
if a[1] ~= 'active' or now >= end_ms then
  return {-2, 'Auction is not active'}
end
local amount = tonumber(ARGV[3])
local total = tonumber(a[6])
local minimum
if total == 0 then
  minimum = tonumber(a[2])
else
  minimum = tonumber(a[4]) + tonumber(a[3])
end
if amount < minimum then
  return {-3, 'Bid too low', minimum}
end
if a[5] == ARGV[2] then
  return {-4, 'Already the highest bidder'}
end

local previous = a[4] or ''
total = total + 1
local extended = 0
if end_ms - now <= tonumber(a[8]) then
  local new_end = now + tonumber(a[9])
  if new_end > end_ms then
    end_ms = new_end
    extended = 1
    redis.call('HINCRBY', KEYS[1], 'extensions', 1)
    redis.call('ZADD', KEYS[2], end_ms, ARGV[1])
  end
end
redis.call('HSET', KEYS[1], 'current_cents', amount, 'highest_bidder', ARGV[2],
  'highest_bid_id', ARGV[4], 'total_bids', total, 'end_ms', end_ms,
  'last_bid_ms', now, 'last_previous', previous, 'last_extended', extended)
return {1, now, previous, total, end_ms, extended}
