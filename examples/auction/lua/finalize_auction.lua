--[[ finalize_auction: end an auction once its time is up; refuse a second run.

KEYS  1 the auction's hash (auction:<id>)   2 the active index (auctions:active)
ARGV  1 the auction id

Returns
  {1, ended_ms}                               ended now: status 'ended', out of the index
  {-1, 'Auction not found'}
  {-2, 'Auction has not ended', remaining_ms} a bid extended it: run again later
  {-3, 'Already finalized'}
The final state (price, winner, bids, end) is then read from the hash.
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1, 'Auction not found'}
end
local a = redis.call('HMGET', KEYS[1], 'status', 'end_ms')
if a[1] == 'ended' then
  return {-3, 'Already finalized'}
end
local end_ms = tonumber(a[2])
if now < end_ms then
  return {-2, 'Auction has not ended', end_ms - now}
end
redis.call('HSET', KEYS[1], 'status', 'ended', 'ended_ms', now)
redis.call('ZREM', KEYS[2], ARGV[1])
return {1, now}
