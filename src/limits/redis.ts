import { createHash } from 'node:crypto';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { GcraResult } from './gcra.js';

/**
 * The GCRA of gcra.ts in Lua, run by Redis as one atomic script per key: read the
 * TAT, decide, write it back, with nothing between (no read-modify-write race
 * between replicas). Numbers travel as strings (%.17g) so no precision is lost.
 *
 * KEYS[1]: the key. ARGV: emissionMs, burst, units, now (ms; '' = Redis's own clock,
 * which every replica shares), op:
 * - 'take': take `units` if the key has them (the GCRA); answers
 *   {allowed 0|1, tat, remaining, retryAfterMs, resetMs} relative to now.
 * - 'adjust': move the TAT by `units` (negative gives back, positive takes even
 *   past the burst: an overspend waits for the refill, owing at most one more burst,
 *   as adjustReservation does in memory); answers the same shape.
 */
export const GCRA_LUA = `
local emission = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now
if ARGV[4] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
else
  now = tonumber(ARGV[4])
end
local eps = 1e-6
local function fmt(x) return string.format('%.17g', x) end
local function units(ms)
  if ms <= 0 then return 0 end
  return math.floor(ms / emission + eps)
end
local stored = tonumber(redis.call('GET', KEYS[1]) or '')
local tat = now
if stored ~= nil and stored >= now then tat = stored end
local tolerance = emission * burst
if ARGV[5] == 'adjust' then
  local moved = math.min(tat + cost * emission, now + 2 * tolerance)
  if moved <= now then
    redis.call('DEL', KEYS[1])
    moved = now
  else
    redis.call('SET', KEYS[1], fmt(moved), 'PX', math.ceil(moved - now) + 1)
  end
  return {1, fmt(moved), fmt(units(now + tolerance - moved)), '0', fmt(moved - now)}
end
local nxt = tat + cost * emission
local allowAt = nxt - tolerance
if allowAt > now + eps then
  return {0, fmt(tat), fmt(units(now + tolerance - tat)), fmt(allowAt - now), fmt(tat - now)}
end
redis.call('SET', KEYS[1], fmt(nxt), 'PX', math.ceil(nxt - now) + 1)
return {1, fmt(nxt), fmt(units(now + tolerance - nxt)), '0', fmt(nxt - now)}
`;

const GCRA_SHA = createHash('sha1').update(GCRA_LUA).digest('hex');

/** Where a Redis backend connects, and how long a check may wait for it. */
export interface RedisLimitOptions {
  /** redis://[user:password@]host:port[/db] (rediss:// for TLS). With `cluster`, one node of the cluster. */
  readonly url: string;
  /** The URL names a node of a Redis Cluster (keys carry hash tags, so each script touches one slot). */
  readonly cluster?: boolean;
  /** Prefix of every key written. */
  readonly keyPrefix?: string;
  /** A call Redis has not answered within this many ms fails (and the limit's onBackendFailure applies). */
  readonly timeoutMs: number;
  /** After a failure, Redis is not asked again for this long (checks take the fallback at once). */
  readonly retryMs: number;
}

/** A backend's health as /readyz and the metrics show it. */
export interface BackendHealth {
  readonly backend: 'redis';
  readonly healthy: boolean;
  readonly failures: number;
  readonly lastError: string | null;
  readonly lastFailureAt: string | null;
}

/** Told when the backend fails and when it is back (the server logs and counts these). */
export interface BackendEvents {
  failed?(error: string): void;
  recovered?(): void;
}

/** Why Redis did not answer: refused at once while it is known to be down, or failed now. */
export class BackendUnavailable extends Error {
  override readonly name = 'BackendUnavailable';

  constructor(
    message: string,
    options?: ErrorOptions,
    /**
     * Whether the command may have run all the same: it was sent, and then timed out or
     * lost its connection (Redis may have run it). False when it was never sent.
     */
    readonly mayHaveRun = false,
  ) {
    super(message, options);
  }
}

/**
 * Rate-limit state in Redis, shared by every replica: one atomic script call per
 * key (GCRA_LUA), commands of the same tick sent in one write (ioredis
 * auto-pipelining: a batch's keys share one round trip), a bounded wait for each
 * (`timeoutMs`), and after a failure a pause of `retryMs` during which it is not
 * asked at all, so a dead or stopped Redis costs a check nothing but its fallback.
 */
export class RedisLimitBackend {
  private readonly client: Redis | Cluster;
  private readonly prefix: string;
  private downUntil = 0;
  /**
   * Whether Redis has run the script on this connection since it (re)connected. Until
   * then each call sends the script's text (EVAL) rather than its hash: a hash Redis
   * does not know is refused (NOSCRIPT) and sent again after calls made later, which
   * could take a batch's items out of order. A restarted Redis has forgotten the script.
   * A Redis Cluster keeps scripts per node, and a node can restart without the cluster
   * client reconnecting as a whole: there every call sends the text.
   */
  private scriptLoaded = false;
  private health: { healthy: boolean; failures: number; lastError: string | null; lastFailureAt: number | null } = { healthy: true, failures: 0, lastError: null, lastFailureAt: null };

  constructor(
    readonly options: RedisLimitOptions,
    private readonly events: BackendEvents = {},
  ) {
    this.prefix = options.keyPrefix ?? 'verdict:limit:';
    const base: RedisOptions = {
      commandTimeout: options.timeoutMs,
      connectTimeout: Math.max(options.timeoutMs, 1000),
      enableAutoPipelining: true,
      // While disconnected, fail at once rather than queue behind a reconnect.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => Math.min(options.retryMs, 1000),
      lazyConnect: false,
    };
    if (options.cluster) {
      const url = new URL(options.url);
      this.client = new Cluster([{ host: url.hostname, port: Number(url.port || 6379) }], {
        enableAutoPipelining: true,
        enableOfflineQueue: false,
        redisOptions: { ...base, ...(url.password ? { password: decodeURIComponent(url.password) } : {}), ...(url.username ? { username: decodeURIComponent(url.username) } : {}) },
      });
    } else {
      this.client = new Redis(options.url, base);
    }
    // Connection errors are reported through failed calls (and logged there, rate-limited).
    this.client.on('error', () => undefined);
    this.client.on('ready', () => {
      this.scriptLoaded = false;
    });
  }

  /** Redis's key for a limiter key: a hash tag around the whole key, so a Redis Cluster keeps it in one slot. */
  keyOf(storeKey: string): string {
    return `${this.prefix}{${storeKey.includes('}') ? `#${createHash('sha256').update(storeKey).digest('base64url')}` : storeKey}}`;
  }

  /** Takes `cost` units of a key if it has them (GCRA). `now` in ms for tests; by default Redis's clock. Rejects with BackendUnavailable. */
  take(storeKey: string, emissionMs: number, burst: number, cost: number, now?: number): Promise<GcraResult> {
    return this.run(storeKey, emissionMs, burst, cost, now, 'take');
  }

  /** Moves a key's TAT by `units` (negative: gives back). */
  adjust(storeKey: string, emissionMs: number, burst: number, units: number, now?: number): Promise<GcraResult> {
    return this.run(storeKey, emissionMs, burst, units, now, 'adjust');
  }

  /**
   * Resolves true once connected, or false after `waitMs` (a server starts either
   * way: until Redis answers, limits follow their onBackendFailure).
   */
  ready(waitMs: number): Promise<boolean> {
    if (this.client.status === 'ready') return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok: boolean): void => {
        clearTimeout(timer);
        this.client.off('ready', onReady);
        resolve(ok);
      };
      const onReady = (): void => done(true);
      const timer = setTimeout(() => done(false), waitMs);
      this.client.on('ready', onReady);
    });
  }

  /** Whether Redis is being asked (false during the pause after a failure). */
  get available(): boolean {
    return this.downUntil === 0 || Date.now() >= this.downUntil;
  }

  status(): BackendHealth {
    const h = this.health;
    return { backend: 'redis', healthy: h.healthy, failures: h.failures, lastError: h.lastError, lastFailureAt: h.lastFailureAt === null ? null : new Date(h.lastFailureAt).toISOString() };
  }

  async close(): Promise<void> {
    try {
      await this.client.quit();
    } catch {
      this.client.disconnect();
    }
  }

  private async run(storeKey: string, emissionMs: number, burst: number, units: number, now: number | undefined, op: 'take' | 'adjust'): Promise<GcraResult> {
    if (!this.available) throw new BackendUnavailable(this.health.lastError ?? 'redis is unavailable');
    const args = [String(emissionMs), String(burst), String(units), now === undefined ? '' : String(now), op];
    const key = this.keyOf(storeKey);
    let reply: unknown;
    try {
      if (!this.scriptLoaded) {
        reply = await this.client.eval(GCRA_LUA, 1, key, ...args);
        this.scriptLoaded = this.options.cluster !== true;
      } else {
        try {
          reply = await this.client.evalsha(GCRA_SHA, 1, key, ...args);
        } catch (error) {
          // Redis lost its scripts while connected (SCRIPT FLUSH, a failover to a replica without them).
          if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
          this.scriptLoaded = false;
          reply = await this.client.eval(GCRA_LUA, 1, key, ...args);
          this.scriptLoaded = true;
        }
      }
    } catch (error) {
      throw this.failed(error);
    }
    if (!this.health.healthy) {
      this.health = { ...this.health, healthy: true };
      this.downUntil = 0;
      this.events.recovered?.();
    }
    return parseReply(reply);
  }

  private failed(error: unknown): BackendUnavailable {
    const message = error instanceof Error ? error.message : String(error);
    const now = Date.now();
    this.downUntil = now + this.options.retryMs;
    this.health = { healthy: false, failures: this.health.failures + 1, lastError: message, lastFailureAt: now };
    this.events.failed?.(message);
    return new BackendUnavailable(message, { cause: error }, true);
  }
}

function parseReply(reply: unknown): GcraResult {
  if (!Array.isArray(reply) || reply.length !== 5) throw new BackendUnavailable(`unexpected reply from the limit script: ${JSON.stringify(reply)}`);
  return { allowed: Number(reply[0]) === 1, tat: Number(reply[1]), remaining: Number(reply[2]), retryAfterMs: Number(reply[3]), resetMs: Number(reply[4]) };
}
