import { FIRE_THRESHOLDS_LUA } from '../redis-alerts.js';

/**
 * Settle a reservation and append the call's audit record, atomically, in one round trip: the
 * reservation leaves every chain member's `reserved` and the actual cost joins `spent` (and
 * `unknown` when the outcome is unknown); the idempotency claim is kept with its response or
 * released; the audit record is appended to the family's audit list, durable with the spend.
 * Also used by the sweeper (ARGV[7] > 0): then it acts only on a reservation past its deadline,
 * and appends the 'interrupted' record the sweeper built (`interruptedAuditInput`, the same
 * function the embedded store's recovery uses) from the reservation it read.
 *
 * KEYS[1]   the family's reservations hash                       {vk:<root>}:res
 * KEYS[2]   the idempotency claim (unused if the reservation has none)  {vk:<root>}:i:<key_id>:<idem>
 * KEYS[3]   the family's audit list                              {vk:<root>}:audit
 * KEYS[4..] per chain member, nearest first: its hash, then its spend hash of the reservation's day
 * KEYS[4+2n] on one Redis only: the set of audit shards with records to seal     audit-dirty
 * then, per object of ARGV[10]: the object's hash                {vk:<root>}:obj:<object id>
 * ARGV[1]   reservation id
 * ARGV[2]   actual cost, integer micro-dollars ('' = the reserved amount)
 * ARGV[3]   '1' when the outcome is unknown
 * ARGV[4]   response JSON to keep for idempotent replay ('' = release the claim)
 * ARGV[5]   TTL of a kept response, ms
 * ARGV[6]   audit record JSON
 * ARGV[7]   sweep mode: now, epoch ms (only reservations whose deadline is before it); '0' otherwise
 * ARGV[8]   chain length n
 * ARGV[9]   the family's root, to mark its shard in KEYS[4+2n] for the sealer; '' on Redis Cluster,
 *           where that set lives in another slot and the caller marks it once this has run
 * ARGV[10]  m, the vendor objects the answer created, recorded as `RECORD_OBJECT_LUA` does (only when
 *           the reservation is settled here)
 * ARGV[11]  TTL of an object's hash, ms
 * ARGV[12..] per object, three each: amount, currency, booked (integer micro-dollars)
 * then, per position of the reservation's `conc` (issue 26: 1-based chain positions whose calls in
 *           flight it is counted in), that key's in-flight set   {vk:<root>}:fl:<id>
 *           (before the objects); the reservation's entry leaves it here, by a settlement and by the
 *           sweeper alike. The reserve script also drops entries past their deadline by itself, so a
 *           crashed replica holds no limit past its reservations' deadline even with no sweeper.
 * Returns {the audit list length, alerts fired (issue 26: `FIRE_THRESHOLDS_LUA`)}, or {-1, 0} when the
 * reservation is gone (or, sweeping, not yet due).
 */
export const SETTLE_LUA = `
-- HINCRBY needs integer text; tostring() would write large numbers in exponent form.
local function int(x) return string.format('%d', x) end
local raw = redis.call('HGET', KEYS[1], ARGV[1])
-- Already settled (a retried settlement) or swept: settling twice would audit twice.
if not raw then return {-1, 0} end
local reservation = cjson.decode(raw)
if tonumber(ARGV[7]) > 0 and reservation.deadline > tonumber(ARGV[7]) then return {-1, 0} end
local amount = reservation.amount
local actual = amount
if ARGV[2] ~= '' then actual = tonumber(ARGV[2]) end
local n = tonumber(ARGV[8])
if reservation.conc then
  local base = 3 + 2 * n
  if ARGV[9] ~= '' then base = base + 1 end
  for k, _ in ipairs(reservation.conc) do redis.call('ZREM', KEYS[base + k], ARGV[1]) end
end
for i = 1, n do
  local key = KEYS[2 + 2 * i]
  local day = KEYS[3 + 2 * i]
  redis.call('HINCRBY', key, 'reserved', int(-amount))
  redis.call('HINCRBY', key, 'spent', int(actual))
  redis.call('HINCRBY', day, 'reserved', int(-amount))
  redis.call('HINCRBY', day, 'spent', int(actual))
  if ARGV[3] == '1' then redis.call('HINCRBY', key, 'unknown', int(actual)) end
end
redis.call('HDEL', KEYS[1], ARGV[1])
if reservation.idem then
  if ARGV[4] ~= '' then
    redis.call('HSET', KEYS[2], 'response', ARGV[4])
    redis.call('PEXPIRE', KEYS[2], ARGV[5])
  else
    redis.call('DEL', KEYS[2])
  end
end
-- Regression: issue 21. The created objects were a third script per call. Recorded only with the
-- settlement itself: a retried settlement must not put back a state a later call has changed.
local m = tonumber(ARGV[10])
for j = 1, m do
  local key = KEYS[#KEYS - m + j]
  local a = 9 + 3 * j
  local booked = tonumber(redis.call('HGET', key, 'booked') or '0')
  if tonumber(ARGV[a + 2]) > booked then booked = tonumber(ARGV[a + 2]) end
  redis.call('HSET', key, 'amount', ARGV[a], 'currency', ARGV[a + 1], 'booked', int(booked))
  redis.call('PEXPIRE', key, ARGV[11])
end
${FIRE_THRESHOLDS_LUA}
local length = redis.call('RPUSH', KEYS[3], ARGV[6])
-- Regression: issue 21. The mark was its own command after this script's answer: a third write
-- per call. In the same step, the mark also never lags the record it is for.
if ARGV[9] ~= '' then redis.call('SADD', KEYS[4 + 2 * n], ARGV[9]) end
return {length, alerts_fired}
`;
