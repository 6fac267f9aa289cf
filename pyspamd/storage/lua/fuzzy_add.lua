-- Store a fuzzy hash, adding to its weight when it is stored with the same flag.
-- KEYS: 1 the hash, 2 the ids set, 3... its bucket sets
-- ARGV: 1 id, 2 flag, 3 weight, 4 signature, 5 ttl in ms, 6 expiry time
-- Returns: 1 if the hash was not stored before, else 0
-- One script, so two hosts adding the same hash add both weights.
local old = redis.call('GET', KEYS[1])
local flag, weight = tonumber(ARGV[2]), tonumber(ARGV[3])
if old then
  local oflag, oweight = struct.unpack('<I4d', string.sub(old, 1, 12))
  if oflag == flag then weight = weight + oweight end
end
redis.call('SET', KEYS[1], struct.pack('<I4d', flag, weight) .. ARGV[4], 'PX', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
for i = 3, #KEYS do
  redis.call('SADD', KEYS[i], ARGV[1])
  if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[5]) then
    redis.call('PEXPIRE', KEYS[i], ARGV[5])
  end
end
if old then return 0 end
return 1
