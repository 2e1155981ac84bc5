/**
 * The removal of one expired key family (issue 23; `redis-expiry.ts`). Every key it touches
 * shares the family's `{vk:<root>}` hash tag, so the checks and the removal are one atomic step
 * on Redis Cluster too. Day spend hashes (`{vk:<root>}:d:<id>:<day>`) and in-flight sets
 * (`{vk:<root>}:fl:<id>`) are named from KEYS[1] (`<prefix>{vk:<root>}:res`, in the same slot), as
 * the alert scripts name the family's outbox.
 *
 * KEYS[1]   the family's reservations hash                       {vk:<root>}:res
 * KEYS[2]   the family's member set                              {vk:<root>}:members
 * KEYS[3]   the family's audit list                              {vk:<root>}:audit
 * KEYS[4]   the family's alerts                                  {vk:<root>}:alerts
 * KEYS[5..] each member's hash, the root's first                 {vk:<root>}:k:<id>
 * ARGV[1]   the cutoff, epoch ms: the root must have expired before it
 * ARGV[2]   the audit list's length as the caller found it (all of it archived and trimmed)
 * ARGV[3..] the day spend hashes to remove, as `<id>:<YYYY-MM-DD>`
 * Returns {1, keys removed, day hashes removed, alerts removed} when removed, else {code}:
 * -1 the member set is not the one read (a key was added), -2 a reservation is in flight,
 * -3 the root is gone or not expired before the cutoff, -4 an audit record was added since,
 * -5 an alert is pending. Nothing is written unless every check passes. The member set is left
 * for the caller, who removes the family's indexes in other slots from it, then the set itself.
 */
export const PURGE_FAMILY_LUA = `
if redis.call('SCARD', KEYS[2]) ~= #KEYS - 4 then return {-1} end
if redis.call('HLEN', KEYS[1]) > 0 then return {-2} end
local expires = redis.call('HGET', KEYS[5], 'expires_at')
if not expires or tonumber(expires) >= tonumber(ARGV[1]) then return {-3} end
if redis.call('LLEN', KEYS[3]) ~= tonumber(ARGV[2]) then return {-4} end
local alerts = redis.call('HVALS', KEYS[4])
for _, raw in ipairs(alerts) do
  if cjson.decode(raw).state == 'pending' then return {-5} end
end
local base = string.sub(KEYS[1], 1, -5)
local removed = 0
for i = 5, #KEYS do
  removed = removed + redis.call('DEL', KEYS[i])
  -- Issue 26: the key's calls in flight (none is: the reservations hash is empty); ids after ':k:'.
  redis.call('DEL', base .. ':fl:' .. string.sub(KEYS[i], #base + 4))
end
local days = 0
for i = 3, #ARGV do days = days + redis.call('DEL', base .. ':d:' .. ARGV[i]) end
redis.call('DEL', KEYS[1], KEYS[3], KEYS[4])
-- Issue 24: the family's changes not listed yet go with it (its keys leave the list anyway).
redis.call('DEL', base .. ':unlisted')
-- The audit list's count trimmed by the archive goes with the list (issue 23).
redis.call('DEL', base .. ':audit-trimmed')
return {1, removed, days, #alerts}
`;
