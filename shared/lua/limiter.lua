-- The distributed limiter for one scope (provider x key x model). One atomic call per operation,
-- timed by Redis's own clock. shared/limiter.py documents the semantics; MemoryLimiter is its twin.
-- Rates are GCRA: a theoretical arrival time (tat) per dimension, `burst` seconds of tolerance.
-- KEYS[1] state hash   KEYS[2] leases sorted set (lease id -> expiry, in limiter time)
-- ARGV[1] op: acquire | release | cooldown | observe
-- ARGV[2] now in seconds, or '' to use redis TIME (tests pass a fake clock)
-- ARGV[3] state ttl in seconds (garbage collection of idle scopes)
-- ARGV[4..] depend on the op (see each function). Numbers are returned as strings, because
-- Redis truncates a Lua float reply to an integer.

local state, leases = KEYS[1], KEYS[2]
local WINDOW = 60
local EPSILON = 0.000001 -- times are stored to the microsecond: closer than this is "now"

local function clock()
  if ARGV[2] ~= '' then return tonumber(ARGV[2]) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local now = clock()
local state_ttl = tonumber(ARGV[3])

local function fmt(x) return string.format('%.6f', x) end

local function load(names)
  local values = redis.call('HMGET', state, unpack(names))
  local s = {}
  for i, name in ipairs(names) do s[name] = tonumber(values[i]) end
  return s
end

local function save(s, names)
  local pairs_ = {}
  for _, name in ipairs(names) do
    if s[name] ~= nil then
      pairs_[#pairs_ + 1] = name
      pairs_[#pairs_ + 1] = fmt(s[name])
    end
  end
  if #pairs_ > 0 then redis.call('HSET', state, unpack(pairs_)) end
  local ttl = math.max(state_ttl, (s.cooldown or 0) - now)
  redis.call('EXPIRE', state, math.ceil(ttl))
end

local function learned_rpm(s, margin)
  local rpm = 0
  if s.hdr_rpm then rpm = s.hdr_rpm * margin end
  if s.aimd_rpm and (rpm == 0 or s.aimd_rpm < rpm) then rpm = s.aimd_rpm end
  return rpm
end

local function pick(configured, learned)
  if configured > 0 then return configured end
  return learned or 0
end

-- acquire: ARGV[4] rpm  [5] tpm  [6] max in flight (0 = no limit)  [7] tokens  [8] lease id
--   [9] max wait to reserve  [10] burst seconds  [11] lease ttl  [12] in-flight poll
--   [13] margin on provider limits
-- Returns {granted 1|0, wait seconds, reason, lease id}.
local ACQ = {'rpm_tat', 'tpm_tat', 'cooldown', 'hdr_rpm', 'hdr_tpm', 'aimd_rpm', 'tok_iv'}

local function in_flight_wait(cap, poll)
  redis.call('ZREMRANGEBYSCORE', leases, '-inf', now + EPSILON)
  if cap <= 0 or redis.call('ZCARD', leases) < cap then return nil end
  local first = redis.call('ZRANGE', leases, 0, 0, 'WITHSCORES')
  return math.min(poll, tonumber(first[2]) - now)
end

local function slot(s, rpm, tpm, burst)
  local start, reason = now, ''
  if rpm > 0 and s.rpm_tat and s.rpm_tat - burst > start then
    start, reason = s.rpm_tat - burst, 'rpm'
  end
  if tpm > 0 and s.tpm_tat and s.tpm_tat - burst > start then
    start, reason = s.tpm_tat - burst, 'tpm'
  end
  if start - now <= EPSILON then return now, '' end
  return start, reason
end

local function commit(s, rpm, tpm, tokens, start)
  if rpm > 0 then s.rpm_tat = math.max(s.rpm_tat or start, start) + WINDOW / rpm end
  if tpm > 0 then
    s.tok_iv = WINDOW / tpm
    s.tpm_tat = math.max(s.tpm_tat or start, start) + tokens * s.tok_iv
  end
  save(s, ACQ)
end

local function acquire()
  local rpm_cfg, tpm_cfg, cap = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
  local tokens, lease, max_wait = tonumber(ARGV[7]), ARGV[8], tonumber(ARGV[9])
  local burst, lease_ttl, poll, margin =
    tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
  local s = load(ACQ)
  local budget = pick(tpm_cfg, s.hdr_tpm)
  if budget > 0 and tokens > budget then return {0, fmt(0), 'too_large', ''} end
  if s.cooldown and s.cooldown - now > EPSILON then
    return {0, fmt(s.cooldown - now), 'cooldown', ''}
  end
  local busy = in_flight_wait(cap, poll)
  if busy then return {0, fmt(busy), 'in_flight', ''} end
  local rpm = pick(rpm_cfg, learned_rpm(s, margin))
  local tpm = pick(tpm_cfg, s.hdr_tpm and s.hdr_tpm * margin)
  local start, reason = slot(s, rpm, tpm, burst)
  if start - now > max_wait then return {0, fmt(start - now), reason, ''} end
  commit(s, rpm, tpm, tokens, start)
  redis.call('ZADD', leases, start + lease_ttl, lease)
  redis.call('EXPIRE', leases, math.ceil(start - now + lease_ttl))
  return {1, fmt(start - now), reason, lease}
end

-- release: ARGV[4] lease id  [5] tokens used minus tokens reserved, or '' to keep the estimate
local function release()
  redis.call('ZREM', leases, ARGV[4])
  if ARGV[5] == '' then return 0 end
  local s = load({'tpm_tat', 'tok_iv', 'cooldown'})
  if not (s.tpm_tat and s.tok_iv) then return 0 end
  s.tpm_tat = math.max(math.max(s.tpm_tat, now) + tonumber(ARGV[5]) * s.tok_iv, now)
  save(s, {'tpm_tat'})
  return 1
end

local function push_cooldown(s, seconds)
  s.cooldown = math.max(s.cooldown or 0, now + seconds)
end

-- cooldown: ARGV[4] seconds every caller of acquire must wait from now (an existing longer one stays)
local function cooldown()
  local s = load({'cooldown'})
  push_cooldown(s, tonumber(ARGV[4]))
  save(s, {'cooldown'})
  return fmt(s.cooldown - now)
end

-- AIMD from bare 429s. aimd_at opens a measuring span (the first bare 429, then each decrease);
-- ok_n counts the 2xx since. A decrease waits until the span is `span` seconds long, then sets
-- the rate to `decrease` x the 2xx rate over the span (never above the current learned rate):
-- while a provider refuses, the rate it still accepts is what it allows. No 2xx at all: the
-- learned rate (if any) is multiplied by `starved`. A 2xx adds `step` once a rate is learned.
local function aimd_up(s, step)
  if s.aimd_at then s.ok_n = (s.ok_n or 0) + 1 end
  if s.aimd_rpm then s.aimd_rpm = s.aimd_rpm + step end
end

local function aimd_down(s, decrease, starved, floor, span)
  if not s.aimd_at then
    s.aimd_at, s.ok_n = now, 0
    return
  end
  local elapsed = now - s.aimd_at
  if elapsed < span then return end
  local base, factor = s.aimd_rpm, starved
  if (s.ok_n or 0) > 0 then
    local accepted = s.ok_n * WINDOW / elapsed
    if not base or accepted < base then base = accepted end
    factor = decrease
  end
  if base then s.aimd_rpm = math.max(floor, base * factor) end
  s.aimd_at, s.ok_n = now, 0
end

-- observe: ARGV[4] cooldown seconds or ''  [5] provider rpm or ''  [6] provider tpm or ''
--   [7] aimd step '' | up | down  [8] additive step  [9] decrease factor
--   [10] factor when nothing was accepted  [11] minimum rpm  [12] shortest span of a decrease
local OBS = {'cooldown', 'hdr_rpm', 'hdr_tpm', 'aimd_rpm', 'aimd_at', 'ok_n'}

local function observe()
  local s = load(OBS)
  if ARGV[4] ~= '' then push_cooldown(s, tonumber(ARGV[4])) end
  if ARGV[5] ~= '' then s.hdr_rpm = tonumber(ARGV[5]) end
  if ARGV[6] ~= '' then s.hdr_tpm = tonumber(ARGV[6]) end
  if ARGV[7] == 'up' then aimd_up(s, tonumber(ARGV[8])) end
  if ARGV[7] == 'down' then
    aimd_down(s, tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12]))
  end
  save(s, OBS)
  return 1
end

local ops = {acquire = acquire, release = release, cooldown = cooldown, observe = observe}
return ops[ARGV[1]]()
