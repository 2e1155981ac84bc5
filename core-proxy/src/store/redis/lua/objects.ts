/**
 * Tracked vendor objects (issue 17): the amount, currency and booked spend of a Stripe
 * PaymentIntent, per key family, under the family's hash tag, with an exclusive claim so that no
 * two calls that change or move its amount are in flight at once.
 *
 * Every script: KEYS[1] the object's hash   {vk:<root>}:obj:<object id>
 * Fields: amount, currency, booked (integer micro-dollars), claim (claim id), until (epoch ms).
 */

/**
 * Claim the object for one call.
 * ARGV[1]  claim id
 * ARGV[2]  now, epoch ms
 * ARGV[3]  until, epoch ms (the claim lapses then)
 * ARGV[4]  TTL of the object's hash, ms
 * Returns {'busy'} | {'claimed', amount|'', currency|'', booked} (no amount after a lapsed claim)
 */
export const CLAIM_OBJECT_LUA = `
local f = redis.call('HMGET', KEYS[1], 'claim', 'until', 'amount', 'currency', 'booked')
if f[1] and f[1] ~= '' and tonumber(f[2] or '0') > tonumber(ARGV[2]) then return {'busy'} end
redis.call('HSET', KEYS[1], 'claim', ARGV[1], 'until', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
-- A claim that lapsed belonged to a call whose outcome was never recorded: the state may be stale.
if f[1] and f[1] ~= '' then return {'claimed', '', '', f[5] or '0'} end
return {'claimed', f[3] or '', f[4] or '', f[5] or '0'}
`;

/**
 * Release a claim held by this call, keeping, replacing or forgetting the state.
 * ARGV[1]  claim id
 * ARGV[2]  'keep', 'set' or 'forget'
 * ARGV[3..5] with 'set': amount, currency, booked
 * Returns 1, or 0 when the claim is not this call's (it lapsed and another call took it).
 */
export const RELEASE_OBJECT_LUA = `
if redis.call('HGET', KEYS[1], 'claim') ~= ARGV[1] then return 0 end
if ARGV[2] == 'forget' then
  redis.call('DEL', KEYS[1])
  return 1
end
if ARGV[2] == 'set' then
  redis.call('HSET', KEYS[1], 'amount', ARGV[3], 'currency', ARGV[4], 'booked', ARGV[5])
end
redis.call('HDEL', KEYS[1], 'claim', 'until')
return 1
`;

/**
 * Record the state a vendor's answer showed; booked spend only ever grows.
 * ARGV[1]  amount
 * ARGV[2]  currency
 * ARGV[3]  booked, integer micro-dollars
 * ARGV[4]  TTL of the object's hash, ms
 */
export const RECORD_OBJECT_LUA = `
local booked = tonumber(redis.call('HGET', KEYS[1], 'booked') or '0')
if tonumber(ARGV[3]) > booked then booked = tonumber(ARGV[3]) end
redis.call('HSET', KEYS[1], 'amount', ARGV[1], 'currency', ARGV[2], 'booked', string.format('%d', booked))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
`;
