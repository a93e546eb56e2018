-- Record a group of results for one batch, each exactly once, and move the batch counters in the
-- same atomic step (a re-run chunk never double counts). Workers group-commit: every result that
-- finished while the previous write was in flight comes in one call.
-- KEYS[1] results hash   KEYS[2] state hash   KEYS[3] events stream
-- KEYS[4] batch usage hash   KEYS[5] global usage hash
-- ARGV[1] ttl seconds  ARGV[2] now (float seconds, as text)  ARGV[3] events maxlen
-- ARGV[4..] per result, 7 values: custom_id, encoded result, ok (1|0), prompt tokens,
--   completion tokens, provider/model, status code
-- Returns one 1|0 per result: 1 written, 0 already there (first write wins).
local ttl, now, maxlen = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local FIELDS = 7
local written, routes, order = {}, {}, {}
local completed, failed, prompt_sum, completion_sum = 0, 0, 0, 0

for i = 4, #ARGV, FIELDS do
  local cid, ok, route = ARGV[i], ARGV[i + 2], ARGV[i + 5]
  if redis.call('HSETNX', KEYS[1], cid, ARGV[i + 1]) == 0 then
    written[#written + 1] = 0
  else
    written[#written + 1] = 1
    local prompt, completion = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
    local r = routes[route]
    if not r then
      r = {calls = 0, completed = 0, failed = 0, prompt = 0, completion = 0}
      routes[route] = r
      order[#order + 1] = route
    end
    local field = ok == '1' and 'completed' or 'failed'
    r.calls, r[field] = r.calls + 1, r[field] + 1
    r.prompt, r.completion = r.prompt + prompt, r.completion + completion
    if ok == '1' then completed = completed + 1 else failed = failed + 1 end
    prompt_sum, completion_sum = prompt_sum + prompt, completion_sum + completion
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*',
      'custom_id', cid, 'ok', ok, 'status', ARGV[i + 6], 'route', route)
  end
end

if #order == 0 then return written end

local state = KEYS[2]
if completed > 0 then redis.call('HINCRBY', state, 'completed', completed) end
if failed > 0 then redis.call('HINCRBY', state, 'failed', failed) end
redis.call('HINCRBY', state, 'prompt_tokens', prompt_sum)
redis.call('HINCRBY', state, 'completion_tokens', completion_sum)
for _, usage in ipairs({KEYS[4], KEYS[5]}) do
  for _, route in ipairs(order) do
    local r = routes[route]
    redis.call('HINCRBY', usage, route .. '|calls', r.calls)
    if r.completed > 0 then redis.call('HINCRBY', usage, route .. '|completed', r.completed) end
    if r.failed > 0 then redis.call('HINCRBY', usage, route .. '|failed', r.failed) end
    redis.call('HINCRBY', usage, route .. '|prompt_tokens', r.prompt)
    redis.call('HINCRBY', usage, route .. '|completion_tokens', r.completion)
  end
  redis.call('HSET', usage, 'last_call', order[#order] .. '|' .. now)
end

local counts = redis.call('HMGET', state, 'completed', 'failed', 'total', 'status')
local done = tonumber(counts[1] or '0') + tonumber(counts[2] or '0')
local total = tonumber(counts[3] or '-1')
if total >= 0 and done >= total then
  if counts[4] == 'cancelling' then
    redis.call('HSET', state, 'status', 'cancelled', 'completed_at', now)
  elseif counts[4] ~= 'cancelled' then
    redis.call('HSET', state, 'status', 'completed', 'completed_at', now)
  end
end
for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ttl) end
return written
