--[[ update_data: replace a job's data (a step job keeps its state there;
Queue.update_data edits a job that has not started).

KEYS  1 job hash  (with ARGV 2 = "1": 2 active  3 completed  4 failed)
ARGV  1 data (JSON)  2 "1": only a job that is not running or finished
      (waiting, prioritized, delayed, waiting for children); absent: any job
      3 the job id (with ARGV 2)
Returns 1, 0 when the job does not exist, -1 when ARGV 2 refused it (it is
active, completed or failed); nothing written unless 1.
]]
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if ARGV[2] == '1' then
  local id = ARGV[3]
  for i = 2, 4 do
    if redis.call('ZSCORE', KEYS[i], id) then
      return -1
    end
  end
end
redis.call('HSET', KEYS[1], 'data', ARGV[1])
return 1
