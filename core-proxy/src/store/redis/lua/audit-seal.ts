/**
 * Append one batch of a shard's audit records to the global chain, and record which of the
 * shard's records are sealed, in one atomic step, fenced by the sealer lock.
 *
 * Regression: issue 16 part 4. The shard's "sealed" list used to be pushed by a separate command
 * after the chain append; a sealer whose lock expired between the two (an event loop stalled for
 * seconds) pushed the same seqs a second time, the shard's sealed count ran ahead of its records,
 * and the records behind it were skipped forever while `verify` still said `ok`. Now a sealer
 * that no longer holds the lock writes nothing, and the chain and the bookkeeping move together.
 *
 * SHA-256 is not available in Redis Lua, so the hashes are computed by the sealer in Node; the
 * script checks that the chain head and the shard's sealed count are still the ones it read. All
 * keys share the `{audit}` hash tag (one slot on Cluster); the shard's own records, in its family's
 * slot, are read by the sealer beforehand and only named here by their record ids.
 *
 * KEYS[1]  the chain head hash: fields seq, hash            {audit}:head
 * KEYS[2]  the chain list of sealed records                  {audit}:chain
 * KEYS[3]  record id -> seq index                            {audit}:rids
 * KEYS[4]  the sealer lock                                   {audit}:lock
 * KEYS[5]  the seqs of the shard's records, in its order     {audit}:sealed:<shard>
 * KEYS[6]  shard -> seqs the archive's trim removed from the head of KEYS[5]   {audit}:sealed-trimmed
 * ARGV[1]  the sealer's lock token
 * ARGV[2]  lock TTL, ms: the lock is renewed by every batch that lands
 * ARGV[3]  expected head seq
 * ARGV[4]  expected head hash ('' when the chain is empty)
 * ARGV[5]  expected count of the shard's records sealed so far: KEYS[6][shard] + length of KEYS[5]
 *          (issue 23: the trim removes seqs from the head and adds them to KEYS[6], so it leaves
 *          this count, and the seal, as they were; the sealer needs no lock against it)
 * ARGV[6]  the shard
 * ARGV[7..] quadruples, the shard's next records in order: record id, seq, sealed entry JSON, entry
 *          hash. Entry and hash are '' for a record the chain already has (sealed by a version that
 *          kept this bookkeeping elsewhere): then only its seq is recorded for the shard.
 * Returns the new head seq, or: -1 the lock is not ours; -2 the head moved; -3 the shard's sealed
 * count moved; -4 a record is not (or already) in the chain as the sealer thought. Nothing is
 * written unless every check passes.
 */
export const SEAL_APPEND_LUA = `
if redis.call('GET', KEYS[4]) ~= ARGV[1] then return -1 end
local head = redis.call('HMGET', KEYS[1], 'seq', 'hash')
local seq = tonumber(head[1] or '0')
if seq ~= tonumber(ARGV[3]) or (head[2] or '') ~= ARGV[4] then return -2 end
local trimmed = tonumber(redis.call('HGET', KEYS[6], ARGV[6]) or '0')
if trimmed + redis.call('LLEN', KEYS[5]) ~= tonumber(ARGV[5]) then return -3 end
-- Every check before any write: a script's writes are not rolled back when it returns.
local next = seq
for i = 7, #ARGV, 4 do
  local known = redis.call('HGET', KEYS[3], ARGV[i])
  if ARGV[i + 2] == '' then
    if known ~= ARGV[i + 1] then return -4 end
  else
    next = next + 1
    if known or tonumber(ARGV[i + 1]) ~= next then return -4 end
  end
end
local hash = head[2] or ''
for i = 7, #ARGV, 4 do
  if ARGV[i + 2] ~= '' then
    redis.call('RPUSH', KEYS[2], ARGV[i + 2])
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
    hash = ARGV[i + 3]
  end
  redis.call('RPUSH', KEYS[5], ARGV[i + 1])
end
redis.call('HSET', KEYS[1], 'seq', next, 'hash', hash)
redis.call('PEXPIRE', KEYS[4], ARGV[2])
return next
`;

/**
 * Release the sealer lock only if it is still ours.
 * KEYS[1] the lock; ARGV[1] our token. Returns 1 if released.
 */
export const RELEASE_LOCK_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

/**
 * How many of a shard's records are sealed, counted from its first ever (issue 23): the seqs the
 * archive's trim removed plus those still listed. A trim leaves the count as it was.
 * KEYS[1] the shard's seqs list {audit}:sealed:<shard>; KEYS[2] {audit}:sealed-trimmed.
 * ARGV[1] the shard. Returns the count.
 */
export const SEALED_COUNT_LUA = `
return tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') + redis.call('LLEN', KEYS[1])
`;
