-- The totals and the model's generation; the whole model only when the caller's copy is
-- of another generation.
-- KEYS: 1 totals, 2 model
-- ARGV: 1 the generation the caller holds
-- Returns: {totals (spam, ham, model, model_gen), the model as HGETALL gives it or {}}
local totals = redis.call('HMGET', KEYS[1], 'spam', 'ham', 'model', 'model_gen')
if tonumber(totals[3] or '0') > 0 and (totals[4] or '0') ~= ARGV[1] then
  return {totals, redis.call('HGETALL', KEYS[2])}
end
return {totals, {}}
