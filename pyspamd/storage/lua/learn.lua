-- Learn a message as spam or ham (moving it if it was learned as the other class), or
-- unlearn it.
-- KEYS: 1 tokens, 2 learned, 3 totals, 4 messages, 5 fit:spam, 6 fit:ham, 7 seq
-- ARGV: 1 digest, 2 label ("spam" | "ham"; "" = unlearn), 3 day (days since 1970),
--       4 the message's tokens (8 bytes each, big-endian), 5 keep (max_fit_messages,
--       0 = all)
-- Returns: "learned" | "already learned" | "moved" | "unlearned" | "not learned"
-- Lua scripts run atomically, so a message's tokens, its digest and the totals change
-- together or not at all.
-- requires: split trim_fit
local function fitset(cls)
  if cls == 'spam' then return KEYS[5] end
  return KEYS[6]
end
local toks = split(ARGV[4])
local prev = redis.call('HGET', KEYS[2], ARGV[1])
local label = ARGV[2]
if label ~= '' and prev == label then return 'already learned' end
if label == '' and not prev then return 'not learned' end
local day = tonumber(ARGV[3])
-- Tokens go in chunks of 500: one HMGET, one HSET and at most one HDEL per chunk instead
-- of a call per token (2-3x faster learning), and unpack() stays far below Lua's limit.
local pack, unpack_record = struct.pack, struct.unpack
local function adjust(cls, delta)
  local is_spam = cls == 'spam'
  for first = 1, #toks, 500 do
    local last = math.min(first + 499, #toks)
    local values = redis.call('HMGET', KEYS[1], unpack(toks, first, last))
    local set, gone, ns, ng = {}, {}, 0, 0
    for i = first, last do
      local v = values[i - first + 1]
      local s, h, d = 0, 0, 0
      if v then s, h, d = unpack_record('<I4I4I2', v) end
      if is_spam then s = s + delta else h = h + delta end
      if s < 0 then s = 0 end
      if h < 0 then h = 0 end
      if delta > 0 and day > d then d = day end
      if s == 0 and h == 0 then
        if v then
          ng = ng + 1
          gone[ng] = toks[i]
        end
      else
        set[ns + 1] = toks[i]
        set[ns + 2] = pack('<I4I4I2', s, h, d)
        ns = ns + 2
      end
    end
    if ns > 0 then redis.call('HSET', KEYS[1], unpack(set)) end
    if ng > 0 then redis.call('HDEL', KEYS[1], unpack(gone)) end
  end
  if redis.call('HINCRBY', KEYS[3], cls, delta) < 0 then
    redis.call('HSET', KEYS[3], cls, 0)
  end
end
if prev then
  adjust(prev, -1)
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[4], ARGV[1])
  redis.call('ZREM', fitset(prev), ARGV[1])
end
if label ~= '' then
  adjust(label, 1)
  redis.call('HSET', KEYS[2], ARGV[1], label)
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[4])
  redis.call('ZADD', fitset(label), redis.call('INCR', KEYS[7]), ARGV[1])
  local keep = tonumber(ARGV[5])
  if keep > 0 then trim(fitset(label), KEYS[4], keep, 1000000) end
  if prev then return 'moved' end
  return 'learned'
end
return 'unlearned'
