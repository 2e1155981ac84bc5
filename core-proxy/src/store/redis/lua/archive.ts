/**
 * Scripts of the audit archive on Redis (issue 23). Every key shares the `{audit}` hash tag of the
 * chain (one slot on Cluster), so the lease check and the write it fences are one atomic step.
 */

/**
 * Takes or renews the archiver lease.
 * KEYS[1]  the lease                                        {audit}:archive-lease
 * ARGV[1]  the holder's id
 * ARGV[2]  TTL, ms
 * Returns 1 when the holder has the lease until TTL from now, 0 while another holds it.
 */
export const ARCHIVE_LEASE_LUA = `
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`;

/**
 * Records a segment stored and read back, if it is the next one and the holder has the lease.
 * KEYS[1]  the lease                                        {audit}:archive-lease
 * KEYS[2]  the archive state: through, head, segments, trimmed   {audit}:archive
 * KEYS[3]  the chain list (index = seq - 1 - trimmed)       {audit}:chain
 * ARGV[1]  the holder's id
 * ARGV[2]  the segment's first seq
 * ARGV[3]  its last seq
 * ARGV[4]  the hash of record first - 1 (64 zeros for the first segment)
 * ARGV[5]  the hash of record last
 * Returns 1 when recorded; 0 no lease; -1 not the next segment; -2 record last is not in the
 * chain with that hash. Nothing is written unless every check passes.
 */
export const ARCHIVE_RECORD_LUA = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local state = redis.call('HMGET', KEYS[2], 'through', 'head', 'trimmed')
local through = tonumber(state[1] or '0')
local head = state[2] or '${'0'.repeat(64)}'
local trimmed = tonumber(state[3] or '0')
if through ~= tonumber(ARGV[2]) - 1 or head ~= ARGV[4] then return -1 end
local raw = redis.call('LINDEX', KEYS[3], tonumber(ARGV[3]) - 1 - trimmed)
if not raw then return -2 end
local ok, entry = pcall(cjson.decode, raw)
if not ok or entry.hash ~= ARGV[5] or tonumber(entry.seq) ~= tonumber(ARGV[3]) then return -2 end
redis.call('HSET', KEYS[2], 'through', ARGV[3], 'head', ARGV[5])
redis.call('HINCRBY', KEYS[2], 'segments', 1)
return 1
`;

/**
 * Reads sealed records after a seq, wherever the trim has got to (the chain's index 0 is record
 * `trimmed + 1`), in one step with the offset.
 * KEYS[1]  the chain list                                   {audit}:chain
 * KEYS[2]  the archive state                                {audit}:archive
 * ARGV[1]  after seq
 * ARGV[2]  limit (> 0)
 * Returns the chain entries, as stored.
 */
export const ARCHIVE_READ_LUA = `
local trimmed = tonumber(redis.call('HGET', KEYS[2], 'trimmed') or '0')
local start = math.max(tonumber(ARGV[1]) - trimmed, 0)
return redis.call('LRANGE', KEYS[1], start, start + tonumber(ARGV[2]) - 1)
`;

/**
 * Trims archived records from the live store: the chain's first entries, their record ids, and
 * (on one Redis, where a script may touch every slot) the same records' entries at the head of
 * their families' lists and of the lists of their seqs, which move together, so that the sealer's
 * positions (records sealed = length of the seqs list) stay true.
 * KEYS[1]  the lease                                        {audit}:archive-lease
 * KEYS[2]  the archive state                                {audit}:archive
 * KEYS[3]  the chain list                                   {audit}:chain
 * KEYS[4]  record id -> seq index                           {audit}:rids
 * KEYS[5]  the chain head                                   {audit}:head
 * KEYS[6]  the sealer lock                                 {audit}:lock
 * KEYS[7..] pairs: a family's audit list {vk:<root>}:audit, its seqs list {audit}:sealed:<root>
 * ARGV[1]  the holder's id
 * ARGV[2]  `trimmed` as the caller read it
 * ARGV[3]  the new `trimmed` (at most `through`, below the head's seq)
 * ARGV[4]  how many pairs
 * ARGV[5..4+pairs] per pair: how many of its first entries go (their seqs are all <= ARGV[3])
 * ARGV[5+pairs] '1': the record ids follow and are removed from KEYS[4]; '0': none (Redis
 *          Cluster, where the families' lists stay and their records' ids with them)
 * ARGV[6+pairs..] the record ids of the chain entries that go, in order
 * Returns how many chain entries were removed, or: -1 no lease; -2 the state moved; -3 a pair's
 * count does not match its seqs; -4 a sealer holds its lock (it read the lists' lengths: they
 * must not move under it; try again shortly). Nothing is written unless every check passes.
 */
export const ARCHIVE_TRIM_LUA = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local state = redis.call('HMGET', KEYS[2], 'through', 'trimmed')
local through = tonumber(state[1] or '0')
local trimmed = tonumber(state[2] or '0')
local target = tonumber(ARGV[3])
local headSeq = tonumber(redis.call('HGET', KEYS[5], 'seq') or '0')
if trimmed ~= tonumber(ARGV[2]) or target > through or target >= headSeq or target <= trimmed then return -2 end
local npairs = tonumber(ARGV[4])
if npairs > 0 and redis.call('EXISTS', KEYS[6]) == 1 then return -4 end
local withRids = ARGV[5 + npairs] == '1'
local ridsFrom = 6 + npairs
if withRids and #ARGV - ridsFrom + 1 ~= target - trimmed then return -2 end
for p = 1, npairs do
  local k = tonumber(ARGV[4 + p])
  local sealedKey = KEYS[8 + 2 * (p - 1)]
  if k > 0 then
    local lastGone = redis.call('LINDEX', sealedKey, k - 1)
    if not lastGone or tonumber(lastGone) > target then return -3 end
    if redis.call('LLEN', KEYS[7 + 2 * (p - 1)]) < k then return -3 end
  end
end
for p = 1, npairs do
  local k = tonumber(ARGV[4 + p])
  if k > 0 then
    redis.call('LTRIM', KEYS[7 + 2 * (p - 1)], k, -1)
    redis.call('LTRIM', KEYS[8 + 2 * (p - 1)], k, -1)
  end
end
for i = (withRids and ridsFrom or #ARGV + 1), #ARGV, 500 do
  redis.call('HDEL', KEYS[4], unpack(ARGV, i, math.min(i + 499, #ARGV)))
end
redis.call('LTRIM', KEYS[3], target - trimmed, -1)
redis.call('HSET', KEYS[2], 'trimmed', target)
return target - trimmed
`;
