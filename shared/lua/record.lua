-- Record one request's result exactly once, and move the batch counters in the same atomic step.
-- KEYS[1] results hash   KEYS[2] state hash   KEYS[3] events stream
-- KEYS[4] batch usage hash   KEYS[5] global usage hash
-- ARGV[1] custom_id  ARGV[2] encoded result  ARGV[3] ok (1|0)  ARGV[4] prompt tokens
-- ARGV[5] completion tokens  ARGV[6] provider/model  ARGV[7] status code  ARGV[8] ttl seconds
-- ARGV[9] now (float seconds, as text)  ARGV[10] events maxlen
-- Returns 1 when written, 0 when this custom_id already had a result (first write wins).
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
local field = 'failed'
if ARGV[3] == '1' then field = 'completed' end
redis.call('HINCRBY', KEYS[2], field, 1)
local prompt = tonumber(ARGV[4])
local completion = tonumber(ARGV[5])
redis.call('HINCRBY', KEYS[2], 'prompt_tokens', prompt)
redis.call('HINCRBY', KEYS[2], 'completion_tokens', completion)
for _, usage in ipairs({KEYS[4], KEYS[5]}) do
  redis.call('HINCRBY', usage, ARGV[6] .. '|calls', 1)
  redis.call('HINCRBY', usage, ARGV[6] .. '|' .. field, 1)
  redis.call('HINCRBY', usage, ARGV[6] .. '|prompt_tokens', prompt)
  redis.call('HINCRBY', usage, ARGV[6] .. '|completion_tokens', completion)
  redis.call('HSET', usage, 'last_call', ARGV[6] .. '|' .. ARGV[9])
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[10], '*',
  'custom_id', ARGV[1], 'ok', ARGV[3], 'status', ARGV[7], 'route', ARGV[6])
local done = tonumber(redis.call('HGET', KEYS[2], 'completed') or '0')
  + tonumber(redis.call('HGET', KEYS[2], 'failed') or '0')
local total = tonumber(redis.call('HGET', KEYS[2], 'total') or '-1')
if total >= 0 and done >= total then
  local status = redis.call('HGET', KEYS[2], 'status')
  if status == 'cancelling' then
    redis.call('HSET', KEYS[2], 'status', 'cancelled', 'completed_at', ARGV[9])
  elseif status ~= 'cancelled' then
    redis.call('HSET', KEYS[2], 'status', 'completed', 'completed_at', ARGV[9])
  end
end
local ttl = tonumber(ARGV[8])
for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ttl) end
return 1
