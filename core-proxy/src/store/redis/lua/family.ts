/**
 * Create a vault key inside its family, refusing it if the parent is gone, revoked or expired, and
 * giving it the parent's taint as it is now (checked atomically with the insert, so a revoke or
 * taint racing a child's creation, on any replica, cannot be missed). The depth is not computed
 * here: a family's ancestry never changes, so the caller knows it exactly and passes ARGV[1] '2'
 * for a parent with no room; the script refuses it after the checks that come first, in the
 * order of `Store.createKey` (missing, inactive, no room), as the embedded store does.
 *
 * KEYS[1]  the new key's hash                {vk:<root>}:k:<id>
 * KEYS[2]  the family's member set           {vk:<root>}:members
 * KEYS[3]  the parent's hash, or KEYS[1] when there is no parent
 * KEYS[4]  the family's unlisted changes     {vk:<root>}:unlisted
 * ARGV[1]  '0' no parent, '1' a parent, '2' a parent whose ancestry leaves no room for a child
 * ARGV[2]  now, epoch ms
 * ARGV[3..] field, value pairs of the new key
 * Returns {'ok', tainted '1'|'0'}, or {error word}: 'parent_missing', 'parent_inactive', 'parent_roomless'.
 */
export const CREATE_KEY_LUA = `
local inherit = false
if ARGV[1] ~= '0' then
  local p = redis.call('HMGET', KEYS[3], 'expires_at', 'revoked_at', 'tainted')
  if not p[1] then return {'parent_missing'} end
  if (p[2] and p[2] ~= '') or tonumber(p[1]) <= tonumber(ARGV[2]) then return {'parent_inactive'} end
  if ARGV[1] == '2' then return {'parent_roomless'} end
  inherit = p[3] == '1'
end
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
if inherit then redis.call('HSET', KEYS[1], 'tainted', '1') end
redis.call('SADD', KEYS[2], KEYS[1])
-- Issue 24: the key's list entries and 'issued' change are written after this script, in another
-- slot; this marker, atomic with the key, outlives a caller that dies before (the backstop lists it).
redis.call('ZADD', KEYS[4], ARGV[2], 'issued ' .. redis.call('HGET', KEYS[1], 'key_id'))
return {'ok', redis.call('HGET', KEYS[1], 'tainted')}
`;

/**
 * Set a one-way flag (revocation or taint) on a key and all its descendants in the family, at any
 * depth: the family's parent links are followed down from the target, each member once.
 *
 * The members are passed as KEYS, read by the caller just before; the script first checks that
 * the member set still has exactly that many members (it only ever grows), so a child created on
 * another replica in between is never left out: the caller re-reads and runs it again.
 * Regression: issue 17 (a child issued while its parent was revoked elsewhere stayed `active`).
 * The embedded store marks the same subtree with a recursive CTE (`SqliteStore.revokeKey`,
 * `taintKey`); `redis-issue-20-store-contract.test.ts` holds the two to the same answers.
 *
 * KEYS[1]   the family's member set          {vk:<root>}:members
 * KEYS[2..] every member hash of the family, as read from KEYS[1]
 * ARGV[1]   the target key id
 * ARGV[2]   field to set: 'revoked_at' (kept if already set) or 'tainted'
 * ARGV[3]   value
 * ARGV[4]   when, epoch ms: the change's time in the feed
 * Each key it changes is also marked `<change> <id>` in the family's `{vk:<root>}:unlisted`
 * (named from KEYS[1]), until the caller has written its change for the feed (issue 24).
 * Returns 1; 0 if the target is not a member; -1 if the member set changed since it was read.
 */
export const MARK_SUBTREE_LUA = `
if redis.call('SCARD', KEYS[1]) ~= #KEYS - 1 then return -1 end
local children = {}
local target = nil
for i = 2, #KEYS do
  local f = redis.call('HMGET', KEYS[i], 'key_id', 'parent')
  if f[1] then
    if f[1] == ARGV[1] then target = KEYS[i] end
    local up = f[2] or ''
    if not children[up] then children[up] = {} end
    table.insert(children[up], {f[1], KEYS[i]})
  end
end
if not target then return 0 end
local unlisted = string.sub(KEYS[1], 1, -8) .. 'unlisted'
local change = 'tainted'
if ARGV[2] == 'revoked_at' then change = 'revoked' end
local queue = {{ARGV[1], target}}
local seen = {[ARGV[1]] = true}
local head = 1
while head <= #queue do
  local id, key = queue[head][1], queue[head][2]
  head = head + 1
  local was = redis.call('HGET', key, ARGV[2])
  if not was or was == '' or was == '0' then
    redis.call('ZADD', unlisted, ARGV[4], change .. ' ' .. id)
  end
  if ARGV[2] ~= 'revoked_at' or not was then
    redis.call('HSET', key, ARGV[2], ARGV[3])
  end
  for _, child in ipairs(children[id] or {}) do
    if not seen[child[1]] then
      seen[child[1]] = true
      table.insert(queue, child)
    end
  end
end
return 1
`;
