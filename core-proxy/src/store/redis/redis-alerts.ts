import type { Redis, Cluster } from 'ioredis';
import type {
  AlertClaimInput,
  AlertClaimOutput,
  AlertEntry,
  AlertFinishInput,
  AlertType,
  KeyAlerts,
} from '../store.js';

/**
 * Threshold and cap-hit alerts on Redis (issue 26). Each family keeps its alerts in one hash in
 * its own slot, `{vk:<root>}:alerts` (alert id -> entry JSON): firing is one `HSETNX` there, inside
 * the script that books the spend (the settle script) or reads the refused cap, so an alert is
 * appended once whichever replica fires it. `alert-families` lists the families with alerts not yet
 * delivered, for the senders; on one Redis the scripts keep it, on Redis Cluster (another slot) the
 * caller adds the family once a script fired, and never removes it.
 *
 * The backstop on Redis Cluster (issue 26): a replica killed between the script that fired and its
 * `SADD` would leave the alert where no sender looks. So the script also sets
 * `{vk:<root>}:alerts-unlisted` in the family's own slot (atomic with the fire), the caller deletes it
 * once the family is listed, and every replica's claims relist the families whose marker is still
 * there: on its first claim (a restarted replica) and then every `relistMs`.
 */

/** Family alerts live as long as any key of the family could (keys live at most 7 days). */
export const ALERTS_TTL_MS = 8 * 24 * 3600 * 1000;
export const ALERT_FAMILIES = 'alert-families';
export const alertsKey = (root: string): string => `{vk:${root}}:alerts`;
/** Cluster only: set by the script that fired, until the family is in `alert-families` (see above). */
export const alertsUnlistedKey = (root: string): string => `{vk:${root}}:alerts-unlisted`;
/** How often a replica on Redis Cluster relists families whose listing was lost. @default 30 s */
export const DEFAULT_ALERT_RELIST_MS = 30_000;
/** Marker reads per round trip of the relist. */
const RELIST_CHUNK = 500;

/**
 * `kb_fire_alert(outbox, key_id, type, cap, period, fraction, spent, cap_micros, label, vendor)`:
 * appends the alert unless its id is there already; returns 1 when it did. The id is
 * `alertId` of alert-thresholds.ts, computed alike. Big numbers stay text (cjson writes numbers
 * with 14 digits).
 */
const FIRE_FUNCTION_LUA = `
local function kb_fire_alert(outbox, key_id, kind, cap, period, fraction, spent, cap_micros, label, vendor)
  local id = 'alrt_' .. string.sub(redis.sha1hex(key_id .. '|' .. kind .. '|' .. cap .. '|' .. period .. '|' .. fraction), 1, 24)
  local t = redis.call('TIME')
  local entry = cjson.encode({
    id = id, type = kind, key_id = key_id, label = label or '', vendor = vendor, spent = spent,
    cap_micros = cap_micros, cap = cap, period = period, at_fraction = fraction,
    created_at = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)),
    state = 'pending', attempts = 0, last_status = '', next_at = 0, lease_until = 0,
  })
  if redis.call('HSETNX', outbox, id, entry) == 0 then return 0 end
  redis.call('PEXPIRE', outbox, '${ALERTS_TTL_MS}')
  return 1
end
`;

/**
 * Spliced into the settle script (lua/settle.ts) after the spend is booked: fires every threshold
 * the chain's spend has reached, of each key's lifetime cap and of its daily cap in the
 * reservation's day. Reads `KEYS`, `n`, `reservation` and `ARGV[9]` (the family's root on one
 * Redis, '' on Cluster) of that script; sets `alerts_fired`. The family's outbox is named from
 * KEYS[1] (`<prefix>{vk:<root>}:res`), in the same slot; `alert-families` only on one Redis.
 */
export const FIRE_THRESHOLDS_LUA = `${FIRE_FUNCTION_LUA}
local alerts_fired = 0
do
  local outbox = string.sub(KEYS[1], 1, -4) .. 'alerts'
  for i = 1, n do
    local f = redis.call('HMGET', KEYS[2 + 2 * i], 'alerts', 'cap', 'daily_cap', 'spent', 'key_id', 'label', 'vendor')
    if f[1] and f[1] ~= '' then
      local day_spent = '0'
      if f[3] and f[3] ~= '' then day_spent = redis.call('HGET', KEYS[3 + 2 * i], 'spent') or '0' end
      for text in string.gmatch(f[1], '[^,]+') do
        local x = tonumber(text)
        if f[2] and f[2] ~= '' and tonumber(f[4]) >= x * tonumber(f[2]) then
          alerts_fired = alerts_fired + kb_fire_alert(outbox, f[5], 'keybrake.alert.threshold', 'lifetime', 'lifetime', text, f[4], f[2], f[6], f[7])
        end
        if f[3] and f[3] ~= '' and tonumber(day_spent) >= x * tonumber(f[3]) then
          alerts_fired = alerts_fired + kb_fire_alert(outbox, f[5], 'keybrake.alert.threshold', 'daily', reservation.day, text, day_spent, f[3], f[6], f[7])
        end
      end
    end
  end
  if alerts_fired > 0 and ARGV[9] ~= '' then
    local at = string.find(KEYS[1], '{vk:', 1, true)
    redis.call('SADD', string.sub(KEYS[1], 1, at - 1) .. '${ALERT_FAMILIES}', ARGV[9])
  elseif alerts_fired > 0 then
    -- Redis Cluster: the caller lists the family; this marker, in the family's slot, outlives a
    -- caller killed before it did (issue 26: the backstop relists it).
    redis.call('SET', outbox .. '-unlisted', '1', 'PX', '${ALERTS_TTL_MS}')
  end
end
`;

/**
 * Fires a cap hit of the key whose cap refused a call (the reserve script answered
 * `cap_exhausted` naming it): the lifetime cap if the call would pass it, else the daily one.
 *
 * KEYS[1] the key's hash                      {vk:<root>}:k:<id>
 * KEYS[2] its spend hash of the call's day     {vk:<root>}:d:<id>:<day>
 * KEYS[3] the family's alerts                  {vk:<root>}:alerts
 * KEYS[4] on one Redis only: alert-families
 * ARGV[1] the call's cost, integer micro-dollars
 * ARGV[2] the call's UTC day
 * ARGV[3] the family's root
 * Returns 1 when it fired, 0 when the key has no alerts or it had fired already.
 */
export const CAP_HIT_LUA = `${FIRE_FUNCTION_LUA}
local f = redis.call('HMGET', KEYS[1], 'alerts', 'cap', 'daily_cap', 'spent', 'reserved', 'key_id', 'label', 'vendor')
if not f[1] or f[1] == '' then return 0 end
local cost = tonumber(ARGV[1])
local fired = 0
local used = tonumber(f[4]) + tonumber(f[5])
if f[2] and f[2] ~= '' and used + cost > tonumber(f[2]) then
  fired = kb_fire_alert(KEYS[3], f[6], 'keybrake.alert.cap_hit', 'lifetime', 'lifetime', '', string.format('%d', used), f[2], f[7], f[8])
elseif f[3] and f[3] ~= '' then
  local d = redis.call('HMGET', KEYS[2], 'spent', 'reserved')
  local day_used = tonumber(d[1] or '0') + tonumber(d[2] or '0')
  fired = kb_fire_alert(KEYS[3], f[6], 'keybrake.alert.cap_hit', 'daily', ARGV[2], '', string.format('%d', day_used), f[3], f[7], f[8])
end
if fired == 1 and KEYS[4] then redis.call('SADD', KEYS[4], ARGV[3]) end
if fired == 1 and not KEYS[4] then redis.call('SET', KEYS[3] .. '-unlisted', '1', 'PX', '${ALERTS_TTL_MS}') end
return fired
`;

/**
 * Leases a family's due alerts to one sender and counts one attempt on each.
 *
 * KEYS[1] the family's alerts                  {vk:<root>}:alerts
 * KEYS[2] on one Redis only: alert-families (the family leaves it once it has nothing pending)
 * ARGV[1] now, epoch ms
 * ARGV[2] the lease's end, epoch ms
 * ARGV[3] most alerts to lease
 * ARGV[4] the family's root
 * Returns JSON {claimed: [entry...], threshold: pending count, cap_hit: pending count}.
 */
export const CLAIM_ALERTS_LUA = `
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[3])
local claimed = {}
local pending = { ['keybrake.alert.threshold'] = 0, ['keybrake.alert.cap_hit'] = 0 }
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local entry = cjson.decode(all[i + 1])
  if entry.state == 'pending' then
    pending[entry.type] = (pending[entry.type] or 0) + 1
    if #claimed < limit and tonumber(entry.next_at) <= now and tonumber(entry.lease_until) <= now then
      entry.lease_until = tonumber(ARGV[2])
      entry.attempts = entry.attempts + 1
      local text = cjson.encode(entry)
      redis.call('HSET', KEYS[1], all[i], text)
      claimed[#claimed + 1] = text
    end
  end
end
if KEYS[2] and pending['keybrake.alert.threshold'] + pending['keybrake.alert.cap_hit'] == 0 then
  redis.call('SREM', KEYS[2], ARGV[4])
end
return {pending['keybrake.alert.threshold'], pending['keybrake.alert.cap_hit'], unpack(claimed)}
`;

/**
 * Records one delivery attempt's outcome; a delivered or failed alert stays so.
 *
 * KEYS[1] the family's alerts                  {vk:<root>}:alerts
 * ARGV[1] alert id; ARGV[2] new state; ARGV[3] HTTP status ('' for none); ARGV[4] next attempt, epoch ms
 */
export const FINISH_ALERT_LUA = `
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local entry = cjson.decode(raw)
if entry.state ~= 'pending' then return 0 end
entry.state = ARGV[2]
entry.last_status = ARGV[3]
entry.next_at = tonumber(ARGV[4])
entry.lease_until = 0
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(entry))
return 1
`;

interface AlertCommands {
  kbCapHit(...args: (string | number)[]): Promise<number>;
  kbClaimAlerts(...args: (string | number)[]): Promise<(number | string)[]>;
  kbFinishAlert(...args: (string | number)[]): Promise<number>;
}

/** Registers the alert scripts on a client (beside the store's own, `defineScripts`). */
export function defineAlertScripts(redis: Redis | Cluster): void {
  redis.defineCommand('kbCapHit', { lua: CAP_HIT_LUA });
  redis.defineCommand('kbClaimAlerts', { lua: CLAIM_ALERTS_LUA });
  redis.defineCommand('kbFinishAlert', { numberOfKeys: 1, lua: FINISH_ALERT_LUA });
}

/** An entry as the scripts keep it. */
interface StoredAlert {
  id: string;
  type: AlertType;
  key_id: string;
  label: string;
  vendor: string;
  spent: string;
  cap_micros: string;
  cap: 'lifetime' | 'daily';
  period: string;
  at_fraction: string;
  created_at: string;
  state: AlertEntry['state'];
  attempts: number;
  last_status: string;
  next_at: number;
}

function toEntry(text: string): AlertEntry {
  const stored = JSON.parse(text) as StoredAlert;
  return {
    id: stored.id,
    type: stored.type,
    keyId: stored.key_id,
    agentRunLabel: stored.label === '' ? null : stored.label,
    vendor: stored.vendor,
    spentMicros: Number(stored.spent),
    capMicros: Number(stored.cap_micros),
    cap: stored.cap,
    period: stored.period,
    atFraction: stored.at_fraction === '' ? null : Number(stored.at_fraction),
    createdAt: Number(stored.created_at),
    state: stored.state,
    attempts: Number(stored.attempts),
    lastStatus: stored.last_status === '' ? null : Number(stored.last_status),
    nextAttemptAt: Number(stored.next_at),
  };
}

/** What {@link RedisAlerts} needs of the store. */
export interface RedisAlertsOptions {
  readonly redis: Redis | Cluster;
  readonly cluster: boolean;
  /** The family root of a key, or undefined for an unknown key. */
  readonly rootOf: (keyId: string) => Promise<string | undefined>;
  /** The key's hash and its day hash, as the store names them. */
  readonly keyHashKey: (root: string, keyId: string) => string;
  readonly dayKey: (root: string, keyId: string, day: string) => string;
  /** Every family root (the store's `shards`): what the Cluster backstop looks through. */
  readonly families: () => Promise<readonly string[]>;
  /** How often the Cluster backstop runs. @default {@link DEFAULT_ALERT_RELIST_MS} */
  readonly relistMs?: number;
}

/** The Redis store's side of alerts; errors are typed by the store's `run`. */
export class RedisAlerts {
  private readonly redis: (Redis | Cluster) & AlertCommands;
  /** Cap hits this replica has recorded, `<key id> <day>`: a flood of refusals runs the script once. */
  private readonly capHitsSeen = new Set<string>();
  /** When this replica last relisted (Cluster); never yet: its first claim does. */
  private relistedAt = Number.NEGATIVE_INFINITY;

  constructor(private readonly options: RedisAlertsOptions) {
    this.redis = options.redis as (Redis | Cluster) & AlertCommands;
  }

  /** After the settle script fired `fired` alerts: on Cluster the family is listed here. */
  async settled(root: string, fired: number): Promise<void> {
    if (fired > 0 && this.options.cluster) {
      await this.redis.sadd(ALERT_FAMILIES, root);
      await this.redis.del(alertsUnlistedKey(root));
    }
  }

  /**
   * The Cluster backstop: lists every family whose script fired but whose caller never listed it
   * (killed in between), then clears their markers. One `EXISTS` per family, in chunks.
   * @returns how many families it listed.
   */
  async relistUnlisted(): Promise<number> {
    const roots = await this.options.families();
    let listed = 0;
    for (let i = 0; i < roots.length; i += RELIST_CHUNK) {
      const chunk = roots.slice(i, i + RELIST_CHUNK);
      const found = await Promise.all(chunk.map((root) => this.redis.exists(alertsUnlistedKey(root))));
      const lost = chunk.filter((_, j) => found[j] === 1);
      if (lost.length === 0) continue;
      await this.redis.sadd(ALERT_FAMILIES, ...lost);
      await Promise.all(lost.map((root) => this.redis.del(alertsUnlistedKey(root))));
      listed += lost.length;
    }
    return listed;
  }

  /** After the reserve script refused a call on `capKeyId`'s cap. */
  async capHit(root: string, capKeyId: string, costMicros: number, day: string): Promise<void> {
    const seen = `${capKeyId} ${day}`;
    if (this.capHitsSeen.has(seen)) return;
    const keys = [
      this.options.keyHashKey(root, capKeyId),
      this.options.dayKey(root, capKeyId, day),
      alertsKey(root),
      ...(this.options.cluster ? [] : [ALERT_FAMILIES]),
    ];
    const fired = await this.redis.kbCapHit(keys.length, ...keys, costMicros, day, root);
    await this.settled(root, fired);
    if (this.capHitsSeen.size >= 50_000) this.capHitsSeen.clear();
    this.capHitsSeen.add(seen);
  }

  async keyAlerts(keyId: string): Promise<KeyAlerts> {
    const root = await this.options.rootOf(keyId);
    if (root === undefined) return { fractions: [], fired: [] };
    const [fractions, all] = await Promise.all([
      this.redis.hget(this.options.keyHashKey(root, keyId), 'alerts'),
      this.redis.hgetall(alertsKey(root)),
    ]);
    const fired = Object.values(all)
      .map(toEntry)
      .filter((entry) => entry.keyId === keyId)
      .sort((a, b) => a.createdAt - b.createdAt || a.id.localeCompare(b.id));
    return { fractions: fractions ? fractions.split(',').map(Number) : [], fired };
  }

  async claim(input: AlertClaimInput): Promise<AlertClaimOutput> {
    if (this.options.cluster && Date.now() - this.relistedAt >= (this.options.relistMs ?? DEFAULT_ALERT_RELIST_MS)) {
      this.relistedAt = Date.now();
      await this.relistUnlisted();
    }
    const claimed: AlertEntry[] = [];
    const pending = { 'keybrake.alert.threshold': 0, 'keybrake.alert.cap_hit': 0 };
    for (const root of await this.redis.smembers(ALERT_FAMILIES)) {
      const keys = [alertsKey(root), ...(this.options.cluster ? [] : [ALERT_FAMILIES])];
      const [threshold, capHit, ...entries] = await this.redis.kbClaimAlerts(
        keys.length,
        ...keys,
        input.now,
        input.now + input.leaseMs,
        Math.max(0, input.limit - claimed.length),
        root,
      );
      pending['keybrake.alert.threshold'] += Number(threshold);
      pending['keybrake.alert.cap_hit'] += Number(capHit);
      claimed.push(...entries.map((entry) => toEntry(String(entry))));
    }
    return { claimed, pending };
  }

  async finish(input: AlertFinishInput): Promise<void> {
    const root = await this.options.rootOf(input.keyId);
    if (root === undefined) return;
    await this.redis.kbFinishAlert(
      alertsKey(root),
      input.id,
      input.state,
      input.lastStatus === null ? '' : input.lastStatus,
      input.nextAttemptAt,
    );
  }
}
