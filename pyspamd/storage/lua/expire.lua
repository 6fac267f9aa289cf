-- Drop rare tokens not learned for a while (pyspamc expire).
-- KEYS: 1 tokens
-- ARGV: 1 before_day, 2 max_hits, 3... the candidate tokens found by HSCAN
-- Returns: how many tokens were dropped
-- Re-checked inside the script so a token learned again between the scan and the delete
-- survives.
local before, maxhits, n = tonumber(ARGV[1]), tonumber(ARGV[2]), 0
for i = 3, #ARGV do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v then
    local s, h, d = struct.unpack('<I4I4I2', v)
    if d < before and s + h <= maxhits then
      redis.call('HDEL', KEYS[1], ARGV[i])
      n = n + 1
    end
  end
end
return n
