-- Forget a fuzzy hash stored with a given flag.
-- KEYS: 1 the hash, 2 the ids set
-- ARGV: 1 id, 2 flag
-- Returns: 1 if it was stored with that flag, else 0
-- Bucket sets keep the id until they expire: a look-up ignores ids whose hash is gone.
local old = redis.call('GET', KEYS[1])
if not old then return 0 end
local oflag = struct.unpack('<I4', string.sub(old, 1, 4))
if oflag ~= tonumber(ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
