/**
 * Create a vault key inside its family, refusing it if the parent is gone, revoked or expired
 * (checked atomically with the insert, so a revoke racing a child's creation cannot be missed).
 *
 * KEYS[1]  the new key's hash                {vk:<root>}:k:<id>
 * KEYS[2]  the family's member set           {vk:<root>}:members
 * KEYS[3]  the parent's hash, or KEYS[1] when there is no parent
 * ARGV[1]  '1' when there is a parent
 * ARGV[2]  now, epoch ms
 * ARGV[3..] field, value pairs of the new key
 * Returns 'ok' or an error word: 'parent_missing', 'parent_inactive'.
 */
export const CREATE_KEY_LUA = `
if ARGV[1] == '1' then
  local p = redis.call('HMGET', KEYS[3], 'expires_at', 'revoked_at')
  if not p[1] then return 'parent_missing' end
  if (p[2] and p[2] ~= '') or tonumber(p[1]) <= tonumber(ARGV[2]) then return 'parent_inactive' end
end
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('SADD', KEYS[2], KEYS[1])
return 'ok'
`;

/**
 * Set a one-way flag (revocation or taint) on a key and all its descendants in the family.
 *
 * KEYS[1..] every member hash of the family
 * ARGV[1]   the target key id
 * ARGV[2]   field to set: 'revoked_at' (kept if already set) or 'tainted'
 * ARGV[3]   value
 * Returns 1, or 0 if the target is not a member.
 */
export const MARK_SUBTREE_LUA = `
local parent = {}
local found = false
for i = 1, #KEYS do
  local f = redis.call('HMGET', KEYS[i], 'key_id', 'parent')
  if f[1] then
    parent[f[1]] = {f[2], KEYS[i]}
    if f[1] == ARGV[1] then found = true end
  end
end
if not found then return 0 end
for id, entry in pairs(parent) do
  local cursor = id
  local depth = 0
  while cursor and cursor ~= '' and depth < 32 do
    if cursor == ARGV[1] then
      if ARGV[2] ~= 'revoked_at' or not redis.call('HGET', entry[2], 'revoked_at') then
        redis.call('HSET', entry[2], ARGV[2], ARGV[3])
      end
      break
    end
    local up = parent[cursor]
    if not up then break end
    cursor = up[1]
    depth = depth + 1
  end
end
return 1
`;
