/**
 * The most ancestors a vault key may have: a root key has none, its child one, and so on.
 * `POST /vault/keys` refuses a `parent_key_id` whose own ancestry is already this long (400
 * `key_depth_exceeded`), so a chain is at most `MAX_KEY_DEPTH + 1` keys, and every walk over a
 * key's ancestry (the stores' reservations and settlements, their Lua scripts) covers exactly that.
 *
 * Why 8: the integrations use one level (an execution's key and its tainted child per untrusted
 * step); a workflow engine's nested sub-workflows, each with its own sub-budget, add one each, so
 * 8 leaves room for six levels of nesting under an execution key. Every proxied call checks and
 * reserves against each key of its chain inside one atomic step (one Lua script on Redis, with two
 * Redis keys per chain member), so the bound also keeps that step small and its cost known.
 */
export const MAX_KEY_DEPTH = 8;

/** Keys in the longest permitted chain: a key and its `MAX_KEY_DEPTH` ancestors. */
export const MAX_CHAIN_LENGTH = MAX_KEY_DEPTH + 1;
