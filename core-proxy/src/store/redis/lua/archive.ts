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
 * Trims archived records from the live store: the chain's first entries, their record ids, the
 * same records' seqs at the head of their shards' seqs lists and (on one Redis, where a script may
 * touch every slot) their entries at the head of their families' lists.
 *
 * Regression: issue 23 (the archiver fell behind under load). This script used to refuse to run
 * while a sealer held its lock (-4), because the sealer addressed a shard's lists by position from
 * their heads, which the trim moves; two replicas sealing under load held the lock nearly all the
 * time, each slice waited up to a second and then gave up, and Redis grew. Positions are absolute
 * now: every list trimmed from its head keeps the count removed from it (the seqs lists in
 * `{audit}:sealed-trimmed`, a family's list in `{vk:<root>}:audit-trimmed`), the sealer reads and
 * checks `count removed + length`, which a trim leaves as it was, and appends only at the tails.
 * A trim and a seal never touch the same entries, so no lock is needed between them.
 *
 * KEYS[1]  the lease                                        {audit}:archive-lease
 * KEYS[2]  the archive state                                {audit}:archive
 * KEYS[3]  the chain list                                   {audit}:chain
 * KEYS[4]  record id -> seq index                           {audit}:rids
 * KEYS[5]  the chain head                                   {audit}:head
 * KEYS[6]  shard -> seqs removed from its seqs list         {audit}:sealed-trimmed
 * KEYS[7]  shards whose family list has archived records left (Cluster)   {audit}:trim-families
 * KEYS[8..] per shard: its seqs list {audit}:sealed:<root>; on one Redis also its family's audit
 *          list {vk:<root>}:audit and that list's count removed {vk:<root>}:audit-trimmed
 * ARGV[1]  the holder's id
 * ARGV[2]  `trimmed` as the caller read it
 * ARGV[3]  the new `trimmed` (at most `through`, below the head's seq)
 * ARGV[4]  '1': one Redis (the families' lists are trimmed here); '0': Cluster (they are trimmed
 *          after, by ARCHIVE_TRIM_FAMILY_LUA in their own slots; the shard is added to KEYS[7])
 * ARGV[5]  how many shards
 * ARGV[6..5+shards] per shard: its name and the most of its first entries that may go (its records
 *          among the chain entries that go); the script removes those whose seq is <= ARGV[3]
 * ARGV[6+2*shards..] the record ids of the chain entries that go, in order
 * Returns how many chain entries were removed, or: -1 no lease; -2 the state moved. Nothing is
 * written unless every check passes.
 */
export const ARCHIVE_TRIM_LUA = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local state = redis.call('HMGET', KEYS[2], 'through', 'trimmed')
local through = tonumber(state[1] or '0')
local trimmed = tonumber(state[2] or '0')
local target = tonumber(ARGV[3])
local headSeq = tonumber(redis.call('HGET', KEYS[5], 'seq') or '0')
if trimmed ~= tonumber(ARGV[2]) or target > through or target >= headSeq or target <= trimmed then return -2 end
local single = ARGV[4] == '1'
local nshards = tonumber(ARGV[5])
local ridsFrom = 6 + 2 * nshards
if #ARGV - ridsFrom + 1 ~= target - trimmed then return -2 end
local stride = single and 3 or 1
for s = 1, nshards do
  local shard = ARGV[4 + 2 * s]
  local most = tonumber(ARGV[5 + 2 * s])
  local seqsKey = KEYS[8 + stride * (s - 1)]
  -- Only seqs <= target go: every one of them is archived, whatever the caller thought.
  local seqs = redis.call('LRANGE', seqsKey, 0, most - 1)
  local k = 0
  while k < #seqs and tonumber(seqs[k + 1]) <= target do k = k + 1 end
  if k > 0 then
    redis.call('LTRIM', seqsKey, k, -1)
    local removed = redis.call('HINCRBY', KEYS[6], shard, k)
    if single then
      local listKey = KEYS[9 + stride * (s - 1)]
      local countKey = KEYS[10 + stride * (s - 1)]
      local done = tonumber(redis.call('GET', countKey) or '0')
      -- The family's list moves with its seqs list (legacy lists start equal: both counts 0).
      if removed > done then
        redis.call('LTRIM', listKey, removed - done, -1)
        redis.call('SET', countKey, removed)
      end
    else
      redis.call('SADD', KEYS[7], shard)
    end
  end
end
for i = ridsFrom, #ARGV, 500 do
  redis.call('HDEL', KEYS[4], unpack(ARGV, i, math.min(i + 499, #ARGV)))
end
redis.call('LTRIM', KEYS[3], target - trimmed, -1)
redis.call('HSET', KEYS[2], 'trimmed', target)
return target - trimmed
`;

/**
 * Redis Cluster: trims a family's audit list, in its own slot, up to the count of its records
 * already trimmed from its seqs list (read from `{audit}:sealed-trimmed` by the caller first:
 * that count only grows, and only once those records are archived). Idempotent: a count at or
 * below what the list has lost already changes nothing.
 * KEYS[1]  the family's audit list                          {vk:<root>}:audit
 * KEYS[2]  its count removed                                {vk:<root>}:audit-trimmed
 * ARGV[1]  the count the list must have lost
 * Returns how many entries were removed now.
 */
export const ARCHIVE_TRIM_FAMILY_LUA = `
local done = tonumber(redis.call('GET', KEYS[2]) or '0')
local want = tonumber(ARGV[1])
if want <= done then return 0 end
local k = math.min(want - done, redis.call('LLEN', KEYS[1]))
if k <= 0 then return 0 end
redis.call('LTRIM', KEYS[1], k, -1)
redis.call('SET', KEYS[2], done + k)
return k
`;

/**
 * Redis Cluster: forgets a shard whose family list has caught up, unless its count moved again.
 * KEYS[1]  {audit}:trim-families   KEYS[2]  {audit}:sealed-trimmed
 * ARGV[1]  the shard   ARGV[2]  the count its family list was trimmed to
 */
export const ARCHIVE_TRIM_FAMILY_DONE_LUA = `
if tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') <= tonumber(ARGV[2]) then
  redis.call('SREM', KEYS[1], ARGV[1])
end
return 1
`;
