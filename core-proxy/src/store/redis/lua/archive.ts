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
