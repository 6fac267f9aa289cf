-- Add to a counter whose time to live starts with its first hit.
-- KEYS: 1 counter
-- ARGV: 1 amount, 2 ttl in ms (0 = none)
-- Returns: the new value
local fresh = redis.call('EXISTS', KEYS[1]) == 0
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if fresh and tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return v
