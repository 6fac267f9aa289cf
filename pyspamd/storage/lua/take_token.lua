-- Take one token from a rate-limit bucket after refilling it for the time since its last
-- use: the same arithmetic as storage.base.bucket_after, inside one script so concurrent
-- workers cannot interleave.
-- KEYS: 1 bucket (value "TOKENS|LAST_TIME")
-- ARGV: 1 capacity, 2 rate per second, 3 now, 4 ttl in ms
-- Returns: {1 if taken else 0, tokens left (%.17g)}
local cap, rate, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens, last = cap, now
local v = redis.call('GET', KEYS[1])
if v then
  local sep = string.find(v, '|', 1, true)
  local t, l = nil, nil
  if sep then
    t, l = tonumber(string.sub(v, 1, sep - 1)), tonumber(string.sub(v, sep + 1))
  end
  if t and l then tokens, last = t, l end
end
if now > last then
  tokens = math.min(cap, tokens + (now - last) * rate)
  last = now
end
local taken = 0
if tokens >= 1 then
  tokens = tokens - 1
  taken = 1
end
redis.call('SET', KEYS[1], string.format('%.17g|%.17g', tokens, last), 'PX', ARGV[4])
return {taken, string.format('%.17g', tokens)}
