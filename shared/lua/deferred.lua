-- Requests handed back for later, timed by Redis's clock to the microsecond (RQ's own scheduler
-- keeps whole seconds, which would add up to a second to a provider's `retry-after: 1`).
-- KEYS[1] deferred sorted set of one queue (job id -> due time); for `due`, pairs of
--   (sorted set of waiting job ids, the RQ queue list they go to)
-- ARGV[1] op: add | due | claim | drop
-- add: ARGV[2] delay in seconds, ARGV[3..] ids of jobs already saved (status scheduled)
-- due: ARGV[2] at most this many due jobs move per set, ARGV[3] RQ's job key prefix ('rq:job:')
-- claim: ARGV[2] lease seconds, ARGV[3] job id: a worker that kept the requests runs them itself;
--   the job stays listed, due when the lease ends (if that worker dies, another runs it)
-- drop: ARGV[2] RQ's job key prefix, ARGV[3] job id: the claimed job is done; forget it
-- Returns how many jobs were added, moved, claimed or dropped. A move is atomic: a job is in the
-- set or in the queue, never both.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000

if ARGV[1] == 'add' then
  local due = string.format('%.6f', now + tonumber(ARGV[2]))
  for i = 3, #ARGV do redis.call('ZADD', KEYS[1], due, ARGV[i]) end
  return #ARGV - 2
end

if ARGV[1] == 'claim' then
  if not redis.call('ZSCORE', KEYS[1], ARGV[3]) then return 0 end
  redis.call('ZADD', KEYS[1], string.format('%.6f', now + tonumber(ARGV[2])), ARGV[3])
  return 1
end

if ARGV[1] == 'drop' then
  local dropped = redis.call('ZREM', KEYS[1], ARGV[3])
  if dropped == 1 then redis.call('DEL', ARGV[2] .. ARGV[3]) end
  return dropped
end

-- due: KEYS come in pairs (waiting set, its queue's list), any number of them
local moved, stamp = 0, string.format('%.6f', now)
for k = 1, #KEYS - 1, 2 do
  local ids = redis.call('ZRANGEBYSCORE', KEYS[k], '-inf', stamp, 'LIMIT', 0, tonumber(ARGV[2]))
  for _, id in ipairs(ids) do
    redis.call('ZREM', KEYS[k], id)
    redis.call('HSET', ARGV[3] .. id, 'status', 'queued')
    redis.call('RPUSH', KEYS[k + 1], id)
  end
  moved = moved + #ids
end
return moved
