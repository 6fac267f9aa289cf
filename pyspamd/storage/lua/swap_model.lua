-- Put a newly written model in place of the old one, in one step.
-- KEYS: 1 the new model, 2 model, 3 totals
-- ARGV: 1 tokens in the new model, 2 its generation
-- Returns: 1
-- A script, because Redis Cluster pipelines refuse RENAME; the keys share the {bayes} slot.
if tonumber(ARGV[1]) > 0 then
  redis.call('RENAME', KEYS[1], KEYS[2])
else
  redis.call('DEL', KEYS[1], KEYS[2])
end
redis.call('HSET', KEYS[3], 'model', ARGV[1], 'model_gen', ARGV[2])
return 1
