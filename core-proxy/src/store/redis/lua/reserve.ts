/**
 * Reserve a call's cost on a vault key and every ancestor, atomically, in one round trip.
 * Steps 3 to 6 of `Store.reserve` (store.ts), in that order and numbered after it (1 and 2, the
 * key and its depth, are checked by the caller on the key's immutable ancestry): revocation and
 * expiry of the whole chain, taint, the idempotency claim, every cap; only then it reserves. The
 * embedded store runs the same steps in `SqliteStore.reserve`. All keys belong to one family and
 * share its hash tag.
 *
 * KEYS[1]   the family's reservations hash                       {vk:<root>}:res
 * KEYS[2]   the idempotency claim of this call (unused if ARGV[5] = '0')  {vk:<root>}:i:<key_id>:<idem>
 * KEYS[3..] per chain member, nearest first, two keys each:
 *           KEYS[2+2i-1] the key's hash                           {vk:<root>}:k:<id>
 *           KEYS[2+2i]   the key's spend of this UTC day          {vk:<root>}:d:<id>:<day>
 * ARGV[1]   reservation id
 * ARGV[2]   cost, integer micro-dollars
 * ARGV[3]   now, epoch ms
 * ARGV[4]   chain length n
 * ARGV[5]   '1' when the call carries an idempotency key
 * ARGV[6]   request fingerprint
 * ARGV[7]   '1' when the endpoint moves money (refused if any chain member is tainted)
 * ARGV[8]   reservation record (JSON) kept until settled or swept
 * ARGV[9]   TTL of an in-flight idempotency claim, ms
 * ARGV[10]  TTL of a daily spend hash, ms
 * ARGV[11]  '1' when a key of the chain has a request or concurrency limit (issue 26: step 7 runs
 *           only then; a chain with none pays nothing for it)
 * ARGV[12]  the reservation's deadline, epoch ms (issue 26: the score of its in-flight entries)
 * KEYS[3+2n..] only when ARGV[11] = '1', per chain member, nearest first: the key's calls in flight,
 *           a sorted set of reservation ids scored by their deadlines   {vk:<root>}:fl:<id>
 *           An entry counts while its reservation is in KEYS[1] and its deadline is ahead: a replica
 *           killed mid-call holds the limit until its reservation's deadline at the latest, whether
 *           or not any sweeper runs (the settle script removes the entry of a settled call).
 * Returns {'reserved', tainted '1'|'0', remaining micro-dollars under the tightest cap, requests
 * left in the tightest window ('' none), calls left under the tightest concurrency limit ('' none)}
 * | {'replay', response_json} | {'refused', code, cap_key_id or '', retry_after_s?}
 */
export const RESERVE_LUA = `
local cost = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local tainted = false
-- Each key's fields read once, for steps 3 and 6 (issue 21: it used to be read twice).
local chain = {}
-- 3. Revocation and expiry, key by key, nearest first (a missing hash: the key is gone).
for i = 1, n do
  local f = redis.call('HMGET', KEYS[1 + 2 * i], 'revoked_at', 'expires_at', 'tainted', 'cap', 'daily_cap', 'spent', 'reserved', 'key_id')
  chain[i] = f
  if not f[2] then return {'refused', 'invalid_vault_key'} end
  if f[1] and f[1] ~= '' then return {'refused', 'vault_key_revoked'} end
  if tonumber(f[2]) <= now then return {'refused', 'vault_key_expired'} end
  if f[3] == '1' then tainted = true end
end
-- 4. Taint.
if ARGV[7] == '1' and tainted then return {'refused', 'tainted_request_refused'} end
-- 5. The idempotency claim.
if ARGV[5] == '1' then
  local claim = redis.call('HMGET', KEYS[2], 'fingerprint', 'response')
  if claim[1] then
    if claim[1] ~= ARGV[6] then return {'refused', 'idempotency_key_reused'} end
    if not claim[2] then return {'refused', 'idempotency_key_in_use'} end
    return {'replay', claim[2]}
  end
end
-- 6. Every cap, key by key, nearest first: lifetime, then daily. What the tightest leaves after
-- this call is the remaining-room header (issue 26).
local remaining = nil
for i = 1, n do
  local f = chain[i]
  if f[4] and f[4] ~= '' then
    local left = tonumber(f[4]) - tonumber(f[6]) - tonumber(f[7]) - cost
    if left < 0 then return {'refused', 'cap_exhausted', f[8]} end
    if not remaining or left < remaining then remaining = left end
  end
  if f[5] and f[5] ~= '' then
    local d = redis.call('HMGET', KEYS[2 + 2 * i], 'spent', 'reserved')
    local left = tonumber(f[5]) - tonumber(d[1] or '0') - tonumber(d[2] or '0') - cost
    if left < 0 then return {'refused', 'cap_exhausted', f[8]} end
    if not remaining or left < remaining then remaining = left end
  end
end
-- 7. Issue 26: requests per second, per minute, then calls in flight, key by key, nearest first,
-- in fixed windows (the rule of key-limits.ts). Counted only once every check has passed.
local requests, concurrent = '', ''
local counts = {}
if ARGV[11] == '1' then
  local second = math.floor(now / 1000)
  local minute = math.floor(now / 60000)
  local function retry(window_end) return math.max(1, math.ceil((window_end - now) / 1000)) end
  local function tighter(room, left) if room == '' or left < room then return left end return room end
  -- One fixed window of ms milliseconds (now in window number current) with this limit, its
  -- stored window and count: the room left after this call, with the window's new fields
  -- appended to set; or nil and the seconds until it has room.
  local function window(limit, stored_w, stored_n, current, ms, field_w, field_n, set)
    local w, c = tonumber(stored_w or '-1'), tonumber(stored_n or '0')
    if current > w then w, c = current, 0 end
    if c + 1 > tonumber(limit) then return nil, retry((w + 1) * ms) end
    set[#set + 1] = field_w; set[#set + 1] = string.format('%d', w)
    set[#set + 1] = field_n; set[#set + 1] = string.format('%d', c + 1)
    return tonumber(limit) - c - 1
  end
  for i = 1, n do
    local g = redis.call('HMGET', KEYS[1 + 2 * i], 'max_rps', 'max_rpm', 'max_conc', 'in_flight', 'rps_w', 'rps_n', 'rpm_w', 'rpm_n')
    local set = {}
    if g[1] then
      local left, wait = window(g[1], g[5], g[6], second, 1000, 'rps_w', 'rps_n', set)
      if not left then return {'refused', 'rate_limited', '', wait} end
      requests = tighter(requests, left)
    end
    if g[2] then
      local left, wait = window(g[2], g[7], g[8], minute, 60000, 'rpm_w', 'rpm_n', set)
      if not left then return {'refused', 'rate_limited', '', wait} end
      requests = tighter(requests, left)
    end
    if g[3] then
      -- Calls in flight: entries past their deadline are dropped first (their replica died
      -- mid-call); at the limit, also those whose reservation is gone (settled by a replica that
      -- could not remove its entry, or swept), so only live reservations refuse a call.
      local flight = KEYS[2 + 2 * n + i]
      redis.call('ZREMRANGEBYSCORE', flight, '-inf', now)
      local inflight = redis.call('ZCARD', flight)
      if inflight + 1 > tonumber(g[3]) then
        for _, id in ipairs(redis.call('ZRANGE', flight, 0, -1)) do
          if redis.call('HEXISTS', KEYS[1], id) == 0 then redis.call('ZREM', flight, id) end
        end
        inflight = redis.call('ZCARD', flight)
      end
      if inflight + 1 > tonumber(g[3]) then return {'refused', 'concurrency_limited', '', 1} end
      concurrent = tighter(concurrent, tonumber(g[3]) - inflight - 1)
    end
    counts[i] = {set, g[3]}
  end
end
for i, count in pairs(counts) do
  if #count[1] > 0 then redis.call('HSET', KEYS[1 + 2 * i], unpack(count[1])) end
  if count[2] then
    local flight = KEYS[2 + 2 * n + i]
    redis.call('ZADD', flight, ARGV[12], ARGV[1])
    -- The set outlives none of its entries: it expires with the latest deadline it holds (a TTL
    -- from the caller's clock, which the deadlines are on, not Redis's).
    local last = redis.call('ZRANGE', flight, -1, -1, 'WITHSCORES')
    redis.call('PEXPIRE', flight, string.format('%d', math.max(1, tonumber(last[2]) - now)))
  end
end
for i = 1, n do
  redis.call('HINCRBY', KEYS[1 + 2 * i], 'reserved', ARGV[2])
  redis.call('HINCRBY', KEYS[2 + 2 * i], 'reserved', ARGV[2])
  redis.call('PEXPIRE', KEYS[2 + 2 * i], ARGV[10])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[8])
if ARGV[5] == '1' then
  redis.call('HSET', KEYS[2], 'fingerprint', ARGV[6])
  redis.call('PEXPIRE', KEYS[2], ARGV[9])
end
local room = {string.format('%d', math.max(0, remaining or 0)), tostring(requests), tostring(concurrent)}
if tainted then return {'reserved', '1', room[1], room[2], room[3]} end
return {'reserved', '0', room[1], room[2], room[3]}
`;
