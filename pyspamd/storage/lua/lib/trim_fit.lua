-- Library: trim(fitset, messages, keep, limit) -> how many messages' tokens were dropped.
-- Pops the oldest members of a fit set past `keep` and drops their stored tokens from the
-- messages hash; at most `limit` per call, so a lowered limit cannot make one script run
-- for long.
local function trim(fitset, messages, keep, limit)
  local extra = math.min(redis.call('ZCARD', fitset) - keep, limit)
  if extra <= 0 then return 0 end
  local old = redis.call('ZPOPMIN', fitset, extra)
  for i = 1, #old, 2 do redis.call('HDEL', messages, old[i]) end
  return extra
end
