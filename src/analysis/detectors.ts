/**
 * The anomaly detectors: one pass over the stream of decisions, in the log's
 * order, the same code live (the server hands each decision it records, see
 * server/alerts.ts) and in batch (`verdict analyze` hands the rows of a log
 * range, analyze.ts). Time is the decision's own timestamp, never the clock,
 * so a day of decisions can be fed in a second and both ways give the same
 * alerts, with the same ids.
 *
 * Figures are counted per subject (a principal, a principal and one model, or a
 * failing credential: a real API key refused as revoked or expired, an unverified
 * token subject, a source address) over a sliding window (an hour by default),
 * estimated from two counts: this fixed window's (aligned to the epoch) and the one
 * before's, weighted by how much of it the sliding window still covers
 * (`previous × (1 − elapsed fraction)`). Counted per fixed window alone, a burst
 * split across a boundary reached nearly twice a threshold unseen. Each alert is
 * raised once per type, subject and fixed window.
 *
 * A subject alerted in a fixed window is alerted again in the next one only for what
 * that next window adds: its own figures, without the carried share of the window
 * alerted, must cross the threshold (the rule for every detector, auth failures in
 * total included). The alert stood for those decisions already; carried, a burst that
 * crossed at 09:58 crossed again with the first few decisions after 10:00, and one
 * burst paged (POSTed, suspended) twice. A rate over the threshold still adds more than
 * the threshold each window, so an attack that goes on is alerted in each; a window
 * after one without the alert carries as before (a burst split across a boundary is
 * still counted whole), and after a whole quiet window nothing is carried anyway.
 * The cost: what the next window adds under the threshold, however much the sliding
 * count holds with the burst alerted, raises nothing more. Memory is bounded: each subject
 * map keeps at most `maxSubjects` entries, the least recently active evicted first
 * (counted in `evictions`); a principal's sets of distinct models (this window's
 * and the one before's) hold at most `reconnaissance.maxResources + 1` ids each.
 * The cost per decision is a few map updates, whatever the number of subjects.
 *
 * A refused key id is counted only when the key exists (REVOKED, EXPIRED need its
 * secret): an UNKNOWN_KEY names whatever id the caller made up, so counted by id a
 * new id per request was a new subject each time, and an alert (a webhook POST) for
 * every made-up id sent past the threshold; it is counted by its source only. Keys
 * have a map of their own, so a flood of made-up token subjects or addresses cannot
 * evict a real key's count and hide its alert.
 *
 * Token subjects and sources are names a caller makes up too: any `sub` fits in a
 * token that does not verify, and an attacker with many addresses (an IPv6 prefix)
 * has a source per request. Each name past the threshold was an alert, stored, POSTed
 * to every webhook, sent to every WatchAlerts subscriber: a flood of them buried the
 * real alerts. So a fixed window raises at most `authFailures.maxAlerts` alerts about
 * token subjects (and as many about sources); the next name past the threshold raises
 * one alert about them all (`many-token-subjects` or `many-sources`, id `*`, an id no
 * name can take) and the rest of the window's are counted, not alerted. Token subjects
 * and sources have a map each, so a flood of one kind cannot evict the other's counts
 * (a source sending a new `sub` each time evicted its own count from a shared map).
 * The failures in names past the threshold that got no alert of their own are
 * counted (`summarised`), for a metric: the `*` alert's figure is the names past
 * the threshold when it was raised, and says nothing of those that came later.
 *
 * Counted by name alone, a spray with a new `sub` and a new address for each attempt
 * (or a few attempts per name, under the threshold) raised nothing however many
 * thousand it made. So every failed authentication is also counted in one figure for
 * the whole stream: past `authFailures.maxTotal` in the sliding window, one alert
 * (subject kind `all-callers`, id `*`) per fixed window. It is one state, not a map:
 * nothing a caller sends can evict it.
 */
import { createHash } from 'node:crypto';
import type { DecisionRecord } from '../decisions/record.js';
import type { Alert, AlertSubject, AlertSubjectKind, AlertType } from './alert.js';
import { DEFAULT_DETECTORS, type DetectorConfig } from './detector-config.js';

/** What the detectors read of a decision: the columns of its row (columns.ts), as a DecisionRecord holds them. */
export type ObservedDecision = Pick<DecisionRecord, 'decisionId' | 'time' | 'caller' | 'principalId' | 'action' | 'resourceType' | 'resourceId' | 'effect' | 'reason' | 'errors' | 'details'>;

/** Example decision ids an alert carries. */
const EXAMPLES = 5;
/** How fast the peer baseline (every principal's usual figure) follows new windows. */
const PEER_ALPHA = 0.05;

/** A ring of the last few decision ids of a subject. */
class Recent {
  private readonly ids: (string | undefined)[] = new Array<string | undefined>(EXAMPLES);
  private next = 0;

  add(id: string): void {
    this.ids[this.next] = id;
    this.next = (this.next + 1) % EXAMPLES;
  }

  /** Oldest first. */
  list(): string[] {
    const out: string[] = [];
    for (let k = 0; k < EXAMPLES; k++) {
      const id = this.ids[(this.next + k) % EXAMPLES];
      if (id !== undefined) out.push(id);
    }
    return out;
  }

  clear(): void {
    this.ids.fill(undefined);
    this.next = 0;
  }
}

const RAISED: Record<AlertType, number> = { volume: 1, probing: 2, reconnaissance: 4, baseline: 8, extraction: 16, 'auth-failures': 32 };

class PrincipalState {
  window = 0;
  count = 0;
  denied = 0;
  raised = 0;
  models: Set<string> | null = null;
  /** The window before's figures (zero when it had none), for the sliding estimate. */
  previous = 0;
  previousDenied = 0;
  /** The alerts (RAISED bits) the window before raised: for those, none of its figures is carried (see the file comment). */
  previousRaised = 0;
  previousModels: Set<string> | null = null;
  /** How many of `previousModels` this window has not touched yet. */
  previousOnly = 0;
  /** The principal's usual requests per window (EWMA over closed windows). */
  ewma = 0;
  windows = 0;
  /** This window's baseline figure and the count above which it alerts. */
  basis = 0;
  limit = Infinity;
  readonly recent = new Recent();
  /**
   * The extraction state of the model this principal called last, and that model's id:
   * most calls repeat the last model, and then no pair key is built. Linked both ways
   * (`CountState.owner`) and unlinked when either is evicted, so neither keeps the other alive.
   */
  lastPair: CountState | null = null;
  lastResource = '';
}

class CountState {
  window = 0;
  count = 0;
  /** The window before's count (zero when it had none), for the sliding estimate. */
  previous = 0;
  raised = false;
  /** Whether the window before raised the alert (or was summarised in a `*` one): then its count is not carried. */
  previousRaised = false;
  /** Past the threshold without an alert of its own: the alert cap of its kind was reached (token subjects and sources only). */
  summarised = false;
  /** The principal whose `lastPair` this is (extraction states only), else null. */
  owner: PrincipalState | null = null;
  readonly recent = new Recent();
}

/** How many names of one kind (token subjects, sources) the current fixed window has alerted about. */
class AlertCap {
  window = -Infinity;
  /** Names past the threshold this window, alerted or not. */
  crossed = 0;
  summarised = false;
  /** Failures in names past the threshold that got no alert of their own, since the start (every window's). */
  failuresSummarised = 0;
}

/** A map of subjects with at most `capacity` entries: the one whose window began longest ago is evicted first. */
class Bounded<S> {
  readonly map = new Map<string, S>();
  constructor(
    private readonly capacity: number,
    private readonly evicted: (state: S) => void,
  ) {}

  add(key: string, state: S): void {
    if (this.map.size >= this.capacity) {
      const oldest = this.map.entries().next().value;
      if (oldest !== undefined) {
        this.map.delete(oldest[0]);
        this.evicted(oldest[1]);
      }
    }
    this.map.set(key, state);
  }

  /** Moves `key` to the newest end (once per subject per window). */
  renew(key: string, state: S): void {
    this.map.delete(key);
    this.map.set(key, state);
  }
}

/**
 * The detectors over one stream of decisions. Feed decisions in the log's
 * order with `observe`; each alert is handed to `onAlert` as it is raised.
 *
 * @example
 * const detectors = new Detectors(resolveDetectors({ volume: { maxRequests: 500 } }), (alert) => sinks.publish(alert));
 * for (const record of rows) detectors.observe(record);
 */
export class Detectors {
  private readonly principals: Bounded<PrincipalState>;
  private readonly pairs: Bounded<CountState>;
  /** Unverified token subjects: whatever a caller writes into a token. */
  private readonly tokenSubjects: Bounded<CountState>;
  /** Source addresses: as many as a caller has addresses. */
  private readonly sources: Bounded<CountState>;
  private readonly tokenSubjectCap = new AlertCap();
  private readonly sourceCap = new AlertCap();
  /** Real API keys (REVOKED, EXPIRED): at most one entry per key in the store. */
  private readonly keys: Bounded<CountState>;
  /** Every failed authentication, whatever it names. */
  private readonly allFailures = new CountState();
  private peer = 0;
  private peerWindows = 0;
  private evictionCount = 0;

  constructor(
    readonly config: DetectorConfig = DEFAULT_DETECTORS,
    private readonly onAlert: (alert: Alert) => void = () => undefined,
  ) {
    const evicted = (): void => {
      this.evictionCount++;
    };
    this.principals = new Bounded(config.maxSubjects, (state: PrincipalState): void => {
      unlink(state);
      evicted();
    });
    this.pairs = new Bounded(config.maxSubjects, (state: CountState): void => {
      if (state.owner !== null) unlink(state.owner);
      evicted();
    });
    this.tokenSubjects = new Bounded(config.maxSubjects, evicted);
    this.sources = new Bounded(config.maxSubjects, evicted);
    this.keys = new Bounded(config.maxSubjects, evicted);
    this.allFailures.window = -Infinity;
  }

  /** Subject states evicted to keep memory bounded, since the start. */
  get evictions(): number {
    return this.evictionCount;
  }

  /**
   * Failed authentications in token subjects and in sources past the threshold that raised
   * no alert of their own (the window's alert cap was reached), since the start: each such
   * name's failures in its window, from the first.
   */
  get summarised(): { readonly tokenSubjects: number; readonly sources: number } {
    return { tokenSubjects: this.tokenSubjectCap.failuresSummarised, sources: this.sourceCap.failuresSummarised };
  }

  /** Subjects held now, over the five maps. */
  get subjects(): number {
    return this.principals.map.size + this.pairs.map.size + this.tokenSubjects.map.size + this.sources.map.size + this.keys.map.size;
  }

  /** One decision, in the log's order. */
  observe(d: ObservedDecision): void {
    const window = d.time - (d.time % this.config.windowMs);
    if (d.reason === 'DENIED_UNAUTHENTICATED') {
      if (this.config.authFailures.enabled) this.authFailure(d, window);
      return;
    }
    if (d.principalId === '') return;
    // A suspended principal's refusals are the suspension at work: counted, they raised probing and
    // volume alerts that, with alert-driven suspension on, renewed the suspension for as long as its client kept calling.
    if (d.reason === 'DENIED_BY_SUSPENSION') return;
    const s = this.principal(d, window);
    const x = this.config.extraction;
    if (x.enabled && d.action === x.action && d.resourceType === x.resourceType) this.extraction(d, window, s);
  }

  private principal(d: ObservedDecision, window: number): PrincipalState {
    const c = this.config;
    let s = this.principals.map.get(d.principalId);
    if (s === undefined) {
      s = new PrincipalState();
      s.window = window;
      this.principals.add(d.principalId, s);
      this.startWindow(s);
    } else if (window > s.window) {
      this.closeWindow(s, window);
      this.principals.renew(d.principalId, s);
      this.startWindow(s);
    }
    s.count++;
    s.recent.add(d.decisionId);
    if (d.effect === 'DENY' && d.reason !== 'DENIED_BY_RATE_LIMIT') s.denied++;
    const carried = this.carried(d.time, s.window);

    if (c.volume.enabled && (s.raised & RAISED.volume) === 0) {
      const repeat = again(s, 'volume');
      const count = repeat ? s.count : s.count + s.previous * carried;
      if (count > c.volume.maxRequests) {
        s.raised |= RAISED.volume;
        this.raise('volume', principal(d.principalId), s.window, round2(count), c.volume.maxRequests, d, s.recent, `${round2(count)} requests ${spanOf(repeat)}, more than ${c.volume.maxRequests}`);
      }
    }
    if (c.probing.enabled && (s.raised & RAISED.probing) === 0) {
      const repeat = again(s, 'probing');
      const share = repeat ? 0 : carried;
      const count = s.count + s.previous * share;
      const denied = s.denied + s.previousDenied * share;
      if (count >= c.probing.minRequests && denied * 100 > c.probing.maxDeniedPercent * count) {
        s.raised |= RAISED.probing;
        const percent = Math.round((denied * 10_000) / count) / 100;
        this.raise('probing', principal(d.principalId), s.window, percent, c.probing.maxDeniedPercent, d, s.recent, `${percent}% of ${round2(count)} decisions${repeat ? ` ${spanOf(true)}` : ''} denied, more than ${c.probing.maxDeniedPercent}%`);
      }
    }
    const r = c.reconnaissance;
    if (r.enabled && d.resourceType === r.resourceType && (s.raised & RAISED.reconnaissance) === 0) {
      s.models ??= new Set();
      if (!s.models.has(d.resourceId)) {
        s.models.add(d.resourceId);
        if (s.previousModels?.has(d.resourceId) === true) s.previousOnly--;
      }
      // The window before's models count as far as the sliding window still covers them, once each.
      const repeat = again(s, 'reconnaissance');
      const models = repeat ? s.models.size : s.models.size + s.previousOnly * carried;
      if (models > r.maxResources) {
        s.raised |= RAISED.reconnaissance;
        this.raise('reconnaissance', principal(d.principalId), s.window, round2(models), r.maxResources, d, s.recent, `${round2(models)} distinct ${r.resourceType}s touched ${spanOf(repeat)}, more than ${r.maxResources}`);
      }
    }
    if (c.baseline.enabled && (s.raised & RAISED.baseline) === 0) {
      const repeat = again(s, 'baseline');
      const count = repeat ? s.count : s.count + s.previous * carried;
      if (count > s.limit) {
        s.raised |= RAISED.baseline;
        const limit = round2(s.limit);
        this.raise('baseline', principal(d.principalId), s.window, round2(count), limit, d, s.recent, `${round2(count)} requests ${spanOf(repeat)}, more than ${c.baseline.factor}× its usual ${round2(s.basis)} (alerting above ${limit})`, round2(s.basis));
      }
    }
    return s;
  }

  /** Folds the closing window into the principal's and the peers' baselines, and moves to `window`. */
  private closeWindow(s: PrincipalState, window: number): void {
    const alpha = this.config.baseline.alpha;
    s.ewma = s.windows === 0 ? s.count : s.ewma + alpha * (s.count - s.ewma);
    this.peer = this.peerWindows === 0 ? s.count : this.peer + PEER_ALPHA * (s.count - this.peer);
    this.peerWindows++;
    // Windows without a decision count as zero.
    const idle = Math.min(1000, Math.round((window - s.window) / this.config.windowMs) - 1);
    if (idle > 0) s.ewma *= Math.pow(1 - alpha, idle);
    s.windows += 1 + Math.max(0, idle);
    const adjacent = window === s.window + this.config.windowMs;
    s.previous = adjacent ? s.count : 0;
    s.previousDenied = adjacent ? s.denied : 0;
    s.previousModels = adjacent ? s.models : null;
    s.previousOnly = s.previousModels?.size ?? 0;
    s.previousRaised = adjacent ? s.raised : 0;
    s.window = window;
    s.count = 0;
    s.denied = 0;
    s.raised = 0;
    s.models = null;
    s.recent.clear();
  }

  /**
   * How much of the window before `start` the sliding window ending at `time` still covers:
   * 1 at the start of a window, falling to 0 at its end.
   */
  private carried(time: number, start: number): number {
    const elapsed = (time - start) / this.config.windowMs;
    return elapsed <= 0 ? 1 : elapsed >= 1 ? 0 : 1 - elapsed;
  }

  /** The sliding count of `s` at `time`: the window before's share carried, unless that window raised the alert. */
  private sliding(s: CountState, time: number): number {
    return s.previousRaised ? s.count : s.count + s.previous * this.carried(time, s.window);
  }

  /** This window's baseline: the principal's own once it has enough history, else no lower than its peers'. */
  private startWindow(s: PrincipalState): void {
    const b = this.config.baseline;
    const own = s.windows >= b.warmupWindows && s.windows > 0;
    s.basis = own ? s.ewma : Math.max(s.windows > 0 ? s.ewma : 0, this.peerWindows > 0 ? this.peer : 0);
    s.limit = b.factor * Math.max(s.basis, b.floor);
  }

  private extraction(d: ObservedDecision, window: number, p: PrincipalState): void {
    const x = this.config.extraction;
    let s = p.lastPair;
    // The state counted() would find: linked, so still in the map; in this window, else counted() moves it on.
    if (s === null || s.window !== window || p.lastResource !== d.resourceId) {
      s = this.counted(this.pairs, `${d.principalId}\u0000${d.resourceId}`, window);
      unlink(p);
      p.lastPair = s;
      p.lastResource = d.resourceId;
      s.owner = p;
    }
    s.count++;
    s.recent.add(d.decisionId);
    const calls = this.sliding(s, d.time);
    if (calls > x.maxCalls && !s.raised) {
      s.raised = true;
      this.raise('extraction', principal(d.principalId), s.window, round2(calls), x.maxCalls, d, s.recent, `${round2(calls)} ${x.action} calls on ${x.resourceType} ${d.resourceId} ${spanOf(s.previousRaised)}, more than ${x.maxCalls}`, undefined, {
        type: d.resourceType,
        id: d.resourceId,
      });
    }
  }

  private authFailure(d: ObservedDecision, window: number): void {
    const key = apiKeyOf(d);
    if (key !== null) this.failure(this.keys, { kind: 'api-key', id: key }, d, window, null);
    const subject = tokenSubjectOf(d);
    if (subject !== null) this.failure(this.tokenSubjects, { kind: 'token-subject', id: subject }, d, window, this.tokenSubjectCap);
    this.failure(this.sources, { kind: 'source', id: sourceOf(d.caller) }, d, window, this.sourceCap);
    this.allFailure(d, window);
  }

  /** Counts a failure in the figure of the whole stream, whatever it names. */
  private allFailure(d: ObservedDecision, window: number): void {
    const max = this.config.authFailures.maxTotal;
    const s = this.allFailures;
    this.movedOn(s, window);
    s.count++;
    s.recent.add(d.decisionId);
    const failures = this.sliding(s, d.time);
    if (failures > max && !s.raised) {
      s.raised = true;
      this.raise('auth-failures', { kind: 'all-callers', id: '*' }, s.window, round2(failures), max, d, s.recent, `${round2(failures)} failed authentications ${spanOf(s.previousRaised)} from all callers together, more than ${max}`);
    }
  }

  /** Counts a failure against `subject`; `cap` bounds the alerts of a kind whose names a caller makes up (null: real API keys). */
  private failure(map: Bounded<CountState>, subject: AlertSubject, d: ObservedDecision, window: number, cap: AlertCap | null): void {
    const max = this.config.authFailures.maxFailures;
    const s = this.counted(map, subject.id, window);
    s.count++;
    s.recent.add(d.decisionId);
    if (s.summarised && cap !== null) {
      cap.failuresSummarised++;
      return;
    }
    const failures = this.sliding(s, d.time);
    if (failures > max && !s.raised) {
      s.raised = true;
      if (cap === null || this.admitted(cap, s.window)) {
        this.raise('auth-failures', subject, s.window, round2(failures), max, d, s.recent, `${round2(failures)} failed authentications ${spanOf(s.previousRaised)}, more than ${max}`);
        return;
      }
      s.summarised = true;
      cap.failuresSummarised += s.count;
      if (!cap.summarised) {
        cap.summarised = true;
        const most = this.config.authFailures.maxAlerts;
        const [kind, names] = subject.kind === 'token-subject' ? (['many-token-subjects', 'token subjects'] as const) : (['many-sources', 'sources'] as const);
        this.raise(
          'auth-failures',
          { kind, id: '*' },
          cap.window,
          cap.crossed,
          most,
          d,
          s.recent,
          `${cap.crossed} ${names} past ${max} failed authentications each, more than the ${most} alerted one by one in this window; the rest of this window's are counted, not alerted (the first not alerted: ${subject.id})`,
        );
      }
    }
  }

  /**
   * Whether a name past the threshold in `window` gets an alert of its own: the first
   * `maxAlerts` of a fixed window do. A name still counting in the window before (a
   * decision recorded a little out of order) is charged to the current one.
   */
  private admitted(cap: AlertCap, window: number): boolean {
    if (window > cap.window) {
      cap.window = window;
      cap.crossed = 0;
      cap.summarised = false;
    }
    cap.crossed++;
    return cap.crossed <= this.config.authFailures.maxAlerts;
  }

  /** The counting state of `key` for `window`, created or moved on. */
  private counted(map: Bounded<CountState>, key: string, window: number): CountState {
    let s = map.map.get(key);
    if (s === undefined) {
      s = new CountState();
      s.window = window;
      map.add(key, s);
    } else if (this.movedOn(s, window)) {
      map.renew(key, s);
    }
    return s;
  }

  /** Moves `s` on to `window` if it is later (a decision of an earlier window counts in the current one); whether it moved. */
  private movedOn(s: CountState, window: number): boolean {
    if (window <= s.window) return false;
    const adjacent = window === s.window + this.config.windowMs;
    s.previous = adjacent ? s.count : 0;
    s.previousRaised = adjacent && s.raised;
    s.window = window;
    s.count = 0;
    s.raised = false;
    s.summarised = false;
    s.recent.clear();
    return true;
  }

  private raise(
    type: AlertType,
    subject: AlertSubject,
    windowStart: number,
    observed: number,
    threshold: number,
    d: ObservedDecision,
    recent: Recent,
    figure: string,
    baseline?: number,
    resource?: { type: string; id: string },
  ): void {
    const windowEnd = windowStart + this.config.windowMs;
    const alert: Alert = {
      id: alertId(type, subject, windowStart, resource),
      type,
      subject,
      windowStart,
      windowEnd,
      observed,
      threshold,
      ...(baseline === undefined ? {} : { baseline }),
      ...(resource === undefined ? {} : { resource }),
      decisionIds: recent.list(),
      raisedAt: d.time,
      summary: `${type}: ${subject.kind} ${subject.id}: ${figure} (window from ${new Date(windowStart).toISOString()})`,
    };
    try {
      this.onAlert(alert);
    } catch {
      // A sink that throws cannot stop the stream (sinks must not throw; see AlertSink).
    }
  }
}

/** Ends the link between a principal and its last extraction state. */
function unlink(p: PrincipalState): void {
  if (p.lastPair !== null) p.lastPair.owner = null;
  p.lastPair = null;
}

/** Whether the window before raised `type` about `s`: then none of that window's figures is carried (see the file comment). */
function again(s: PrincipalState, type: AlertType): boolean {
  return (s.previousRaised & RAISED[type]) !== 0;
}

/** What a figure was counted over, for an alert's summary: a re-alert says why it counts one window only. */
function spanOf(ownWindowOnly: boolean): string {
  return ownWindowOnly ? 'in this window alone (the window before raised this alert, so its share is not counted again)' : 'in the sliding window';
}

function principal(id: string): AlertSubject {
  return { kind: 'principal', id };
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

/**
 * The alert id: the same for the same type, subject, window (and model, for
 * extraction), so live and batch agree and a restart re-raising an alert in
 * the same window stores it once.
 */
export function alertId(type: AlertType, subject: AlertSubject, windowStart: number, resource?: { readonly type: string; readonly id: string }): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify([type, subject.kind, subject.id, windowStart, resource?.type ?? null, resource?.id ?? null]));
  return `al_${hash.digest('hex').slice(0, 32)}`;
}

/**
 * How the API key authenticator words a refused real key, from the start of the
 * message: other refusals (`NOT_A_PEP: … not "API key k1"`) can quote text a caller
 * chose, and UNKNOWN_KEY quotes an id the caller chose (see the file comment).
 */
const API_KEY = /^(?:REVOKED|EXPIRED): API key ([A-Za-z0-9_-]{1,128})\b/;

/** The id of the real API key a refused authentication names (`REVOKED: API key k1 was revoked at …`), if any. */
function apiKeyOf(d: ObservedDecision): string | null {
  const message = d.errors[0]?.message;
  if (message === undefined) return null;
  const match = API_KEY.exec(message.length > 512 ? message.slice(0, 512) : message);
  return match?.[1] ?? null;
}

/** The longest token subject counted by; a longer one is cut (as the gateway records it, authn/jwt.ts). */
const MAX_TOKEN_SUBJECT = 256;

/**
 * The `sub` of a refused bearer token, as the gateway recorded it
 * (`details.authn.tokenSubject`): unverified, so an alert about it says failures
 * piled up in that name, not that its owner sent them.
 */
function tokenSubjectOf(d: ObservedDecision): string | null {
  const authn = d.details?.authn;
  if (typeof authn !== 'object' || authn === null) return null;
  const subject = (authn as { tokenSubject?: unknown }).tokenSubject;
  return typeof subject === 'string' && subject !== '' ? subject.slice(0, MAX_TOKEN_SUBJECT) : null;
}

const PORT = /^(.*):\d{1,5}$/;

/** The caller's address without its port (a connection's port changes; the address does not): `10.0.0.7`, `[::1]`, or an identity as is. */
export function sourceOf(caller: string): string {
  const bare = caller.startsWith('ipv4:') || caller.startsWith('ipv6:') ? caller.slice(5) : caller;
  const match = PORT.exec(bare);
  const host = match?.[1] ?? bare;
  return host.length > 256 ? host.slice(0, 256) : host;
}

/** Every alert type, for help texts and validation. */
export const ALERT_TYPES: readonly AlertType[] = ['volume', 'probing', 'reconnaissance', 'baseline', 'extraction', 'auth-failures'];

/** Subject kinds, for validation. */
export const SUBJECT_KINDS: readonly AlertSubjectKind[] = ['principal', 'api-key', 'token-subject', 'source', 'many-token-subjects', 'many-sources', 'all-callers'];
