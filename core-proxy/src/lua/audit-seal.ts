/**
 * Append sealed audit records to the global chain, only if the chain head is still the one the
 * sealer read. SHA-256 is not available in Redis Lua, so the hashes are computed by the sealer in
 * Node; this guard keeps two sealers (a lock that expired mid-seal) from forking the chain.
 *
 * KEYS[1]  the chain head hash: fields seq, hash      {audit}:head
 * KEYS[2]  the chain list of sealed records            {audit}:chain
 * KEYS[3]  record id -> seq index, against re-sealing  {audit}:rids
 * ARGV[1]  expected head seq
 * ARGV[2]  expected head hash
 * ARGV[3..] triples: record id, sealed entry JSON, entry hash (in seq order)
 * Returns the new head seq, or -1 when the head moved.
 */
export const SEAL_APPEND_LUA = `
local head = redis.call('HMGET', KEYS[1], 'seq', 'hash')
local seq = tonumber(head[1] or '0')
if seq ~= tonumber(ARGV[1]) or (head[2] or '') ~= ARGV[2] then return -1 end
local hash = head[2]
for i = 3, #ARGV, 3 do
  seq = seq + 1
  redis.call('RPUSH', KEYS[2], ARGV[i + 1])
  redis.call('HSET', KEYS[3], ARGV[i], seq)
  hash = ARGV[i + 2]
end
redis.call('HSET', KEYS[1], 'seq', seq, 'hash', hash)
return seq
`;

/**
 * Release the sealer lock only if it is still ours.
 * KEYS[1] the lock; ARGV[1] our token. Returns 1 if released.
 */
export const RELEASE_LOCK_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;
