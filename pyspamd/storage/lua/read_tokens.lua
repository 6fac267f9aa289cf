-- Read the totals, the counts and the model weights of a message's tokens, from one moment.
-- KEYS: 1 totals, 2 tokens, 3 model
-- ARGV: 1 model_only ("1" | "0": skip the counts when a model exists), 2 the tokens
--       (8 bytes each, big-endian)
-- Returns: {totals (spam, ham, model), token records (empty when skipped), weights
--          (empty without a model)}
-- Lua's unpack() has a stack limit, so tokens go 1000 at a time.
-- requires: split
local toks = split(ARGV[2])
local totals = redis.call('HMGET', KEYS[1], 'spam', 'ham', 'model')
local has_model = tonumber(totals[3] or '0') > 0
local records, weights = {}, {}
local function fetch(key, out)
  for first = 1, #toks, 1000 do
    local part = redis.call('HMGET', key, unpack(toks, first, math.min(first + 999, #toks)))
    for i = 1, #part do out[#out + 1] = part[i] end
  end
end
if not (has_model and ARGV[1] == '1') then fetch(KEYS[2], records) end
if has_model then fetch(KEYS[3], weights) end
return {totals, records, weights}
