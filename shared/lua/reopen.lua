-- Reopen failed requests of a batch for `sluice retry`: drop their results, undo their counts.
-- KEYS[1] results hash   KEYS[2] state hash   KEYS[3] failed-requests hash
-- ARGV: custom_ids. Returns the number reopened.
local reopened = 0
for _, cid in ipairs(ARGV) do
  if redis.call('HEXISTS', KEYS[3], cid) == 1 and redis.call('HDEL', KEYS[1], cid) == 1 then
    redis.call('HINCRBY', KEYS[2], 'failed', -1)
    reopened = reopened + 1
  end
end
if reopened > 0 then
  redis.call('HSET', KEYS[2], 'status', 'in_progress')
  redis.call('HDEL', KEYS[2], 'completed_at')
end
return reopened
