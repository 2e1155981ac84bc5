/**
 * Scripts of the console's key list on Redis (issue 22; `redis-listing.ts`). Every key they touch
 * lives in the one slot `{list}`, so they run on Redis Cluster too.
 */

/**
 * One page of a sort index (a sorted set) after a cursor, atomically: a key issued between two
 * commands would otherwise shift ranks under the walk. Entries order by (score, member), ascending
 * or descending in both, as the embedded store's `ORDER BY score, key_id` does. When the cursor's
 * member still has the cursor's score (always for `newest`), its rank is where the page starts;
 * otherwise the walk starts at the first entry of the cursor's score and skips that score's
 * members up to the cursor's.
 *
 * KEYS[1]  the sort index        {list}:newest | {list}:spent | {list}:headroom
 * ARGV[1]  'desc' or 'asc'
 * ARGV[2]  the cursor's score, or '' for the first page
 * ARGV[3]  the cursor's member (key id)
 * ARGV[4]  entries wanted
 * Returns a flat list: member, score, member, score...
 */
export const SCAN_INDEX_LUA = `
local z, desc, n = KEYS[1], ARGV[1] == 'desc', tonumber(ARGV[4])
local function range(from, to)
  if desc then return redis.call('ZREVRANGE', z, from, to, 'WITHSCORES') end
  return redis.call('ZRANGE', z, from, to, 'WITHSCORES')
end
local start = 0
if ARGV[2] ~= '' then
  local s, c = tonumber(ARGV[2]), ARGV[3]
  local current = redis.call('ZSCORE', z, c)
  if current and tonumber(current) == s then
    if desc then start = redis.call('ZREVRANK', z, c) + 1 else start = redis.call('ZRANK', z, c) + 1 end
  else
    if desc then start = redis.call('ZCOUNT', z, '(' .. ARGV[2], '+inf')
    else start = redis.call('ZCOUNT', z, '-inf', '(' .. ARGV[2]) end
    -- Members of the cursor's score up to the cursor's come first: skip them.
    while true do
      local chunk = range(start, start + 99)
      local skipped = 0
      for i = 1, #chunk, 2 do
        local before = (desc and chunk[i] >= c) or ((not desc) and chunk[i] <= c)
        if tonumber(chunk[i + 1]) ~= s or not before then break end
        skipped = skipped + 1
      end
      start = start + skipped
      if skipped < 100 then break end
    end
  end
end
return range(start, start + n - 1)
`;

/**
 * One step of the audit digest, applied only if the digest still stands where the caller read it
 * (another replica may have applied the same records): adds the counts, sets the scores, moves the
 * digest on.
 *
 * KEYS[1]  the digest's position (hash: seq, day)     {list}:digest
 * KEYS[2]  per-key counts (hash: c:<id>, h:<id>, r:<id>: calls, cap hits, refusals)   {list}:stats
 * KEYS[3]  the most_spent index                       {list}:spent
 * KEYS[4]  the closest_to_cap index                   {list}:headroom
 * ARGV[1]  expected seq, ARGV[2] expected day
 * ARGV[3]  new seq, ARGV[4] new day
 * ARGV[5]  number of count entries n, then n times: key id, calls, cap hits, refusals
 * then     per scored key: key id, spent, headroom
 * Returns 1, or 0 when the digest had moved (nothing written).
 */
export const APPLY_DIGEST_LUA = `
local d = redis.call('HMGET', KEYS[1], 'seq', 'day')
if (d[1] or '0') ~= ARGV[1] or (d[2] or '') ~= ARGV[2] then return 0 end
local n = tonumber(ARGV[5])
local i = 6
for _ = 1, n do
  local id = ARGV[i]
  if ARGV[i + 1] ~= '0' then redis.call('HINCRBY', KEYS[2], 'c:' .. id, ARGV[i + 1]) end
  if ARGV[i + 2] ~= '0' then redis.call('HINCRBY', KEYS[2], 'h:' .. id, ARGV[i + 2]) end
  if ARGV[i + 3] ~= '0' then redis.call('HINCRBY', KEYS[2], 'r:' .. id, ARGV[i + 3]) end
  i = i + 4
end
while i + 2 <= #ARGV do
  redis.call('ZADD', KEYS[3], ARGV[i + 1], ARGV[i])
  redis.call('ZADD', KEYS[4], ARGV[i + 2], ARGV[i])
  i = i + 3
end
redis.call('HSET', KEYS[1], 'seq', ARGV[3], 'day', ARGV[4])
return 1
`;

/**
 * Writes changes of keys to the key list and its change log, each once (issue 24): by the replica
 * that made them, right after the family's script, or later by the backstop when that replica died
 * in between (`RedisListing.relistUnlisted`). Whichever comes second writes nothing, so the feed
 * never gets a change twice. An `issued` key is written unless it is in `newest` already (its index
 * entries and its change are one step, here); a `revoked` or `tainted` change unless its field is in
 * the `fed` hash (each key is revoked and tainted at most once).
 *
 * KEYS[1]  {list}:newest   KEYS[2] {list}:spent   KEYS[3] {list}:headroom
 * KEYS[4]  {list}:changes (the change log)        KEYS[5] {list}:fed
 * ARGV[1]  the change: 'issued', 'revoked' or 'tainted'
 * ARGV[2]  the change log's length kept (approximately)
 * ARGV[3..] per key: key id, at (epoch ms), spent score, headroom score (the scores only for 'issued')
 * Returns how many changes it wrote.
 */
export const LIST_CHANGES_LUA = `
local change = ARGV[1]
local step = 2
if change == 'issued' then step = 4 end
local written = 0
for i = 3, #ARGV, step do
  local id, at = ARGV[i], ARGV[i + 1]
  local fresh
  if change == 'issued' then
    fresh = not redis.call('ZSCORE', KEYS[1], id)
    if fresh then
      redis.call('ZADD', KEYS[1], at, id)
      redis.call('ZADD', KEYS[2], 'NX', ARGV[i + 2], id)
      redis.call('ZADD', KEYS[3], 'NX', ARGV[i + 3], id)
    end
  else
    fresh = redis.call('HSETNX', KEYS[5], change .. ' ' .. id, at) == 1
  end
  if fresh then
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[2], '*', 'key_id', id, 'change', change, 'at', at)
    written = written + 1
  end
end
return written
`;
