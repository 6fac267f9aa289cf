-- Drop the stored tokens of a class's oldest messages past max_fit_messages (when the
-- limit was lowered), a bounded number per run.
-- KEYS: 1 the class's fit set, 2 messages
-- ARGV: 1 keep, 2 limit (at most this many dropped per run)
-- Returns: how many messages' tokens were dropped
-- requires: trim_fit
return trim(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]))
