import { FLIP_DIRECTIONS, type FlipDirection, type Group, type ReplayTally, type RuleRole } from './replay.js';

/** A group of decisions in a report: what they share, how many, and the ids of the first few. */
export interface ReportGroup {
  readonly key: string;
  readonly count: number;
  readonly examples: readonly string[];
}

export interface RuleGroup extends ReportGroup {
  /** The rule id (`key` is the same). */
  readonly rule: string;
  /**
   * denies / erred: the candidate's rule that now denies; allows: the one that now allows; no longer allows: an allow that decided before;
   * no route: no route of the candidate maps the gateway request (`rule` is its `METHOD path`);
   * refused: the candidate's attribute schema refuses the request (`rule` is `schema`).
   */
  readonly role: RuleRole;
}

export interface FlipReport {
  readonly count: number;
  readonly examples: readonly string[];
  readonly byRule: readonly RuleGroup[];
  readonly byPrincipal: readonly ReportGroup[];
  readonly byAction: readonly ReportGroup[];
  readonly byResourceType: readonly ReportGroup[];
}

/** The set a replay compared with: the recorded decisions, or another policy set. */
export type Baseline = { readonly kind: 'recorded' } | { readonly kind: 'policies'; readonly source: string; readonly version: string };

/** What `verdict replay --json` prints. */
export interface ReplayReport {
  readonly source: string;
  readonly candidate: { readonly source: string; readonly version: string };
  readonly baseline: Baseline;
  /** The time window, epoch ms, `since <= time < until`; null where open. */
  readonly window: { readonly since: number | null; readonly until: number | null };
  readonly rows: number;
  readonly replayed: number;
  readonly unchanged: number;
  readonly gateway: number;
  /** Gateway requests routed again by the candidate's routes: those mapped to another question than recorded, and those no route maps any more (by `METHOD path`). */
  readonly routes: {
    readonly rerouted: Omit<ReportGroup, 'key'>;
    readonly unrouted: Omit<ReportGroup, 'key'> & { readonly byRoute: readonly ReportGroup[] };
  };
  readonly flips: Record<FlipDirection, FlipReport>;
  /** Refused before the rules, by reason (NO_ROUTE: a gateway request no route maps). */
  readonly refused: readonly ReportGroup[];
  readonly admin: Omit<ReportGroup, 'key'>;
  readonly notReplayable: {
    readonly masked: Omit<ReportGroup, 'key'> & { readonly paths: Readonly<Record<string, number>> };
    readonly unreadable: Omit<ReportGroup, 'key'>;
    /** Gateway requests whose route (the candidate's or baseline's) reads a value that was not recorded, by the value it would set. */
    readonly unrecorded: Omit<ReportGroup, 'key'> & { readonly paths: Readonly<Record<string, number>> };
    /**
     * Rows recorded before the log kept what the directory's facts replaced (`details.directory.*.sent`),
     * whose candidate or baseline would read those lost facts: they fail the run unless accepted.
     */
    readonly directoryFactsLost: Omit<ReportGroup, 'key'>;
  };
  /** Flip directions the caller accepted (--allow-flips): they do not fail the run. */
  readonly allowedFlips: readonly FlipDirection[];
  /** Whether the caller accepted rows whose directory facts cannot be undone (--allow-unreplayable-directory). */
  readonly allowedUnreplayableDirectory: boolean;
  readonly warnings: readonly string[];
  readonly seconds: number;
  readonly rowsPerSecond: number;
  /** CPU time of every thread of the replay. */
  readonly cpuSeconds: number;
}

function ids(group: Group): string[] {
  return group.examples.map((e) => e[1]);
}

function groups(map: ReadonlyMap<string, Group>): ReportGroup[] {
  return [...map]
    .map(([key, g]) => ({ key, count: g.count, examples: ids(g) }))
    .sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

function sortedCounts(map: ReadonlyMap<string, number>): Record<string, number> {
  return Object.fromEntries([...map].sort(([a], [b]) => (a < b ? -1 : 1)));
}

export interface ReportMeta {
  readonly source: string;
  readonly candidate: { readonly source: string; readonly version: string };
  readonly baseline: Baseline;
  readonly window: { readonly since: number | null; readonly until: number | null };
  readonly allowedFlips: readonly FlipDirection[];
  readonly allowedUnreplayableDirectory: boolean;
  readonly warnings: readonly string[];
  readonly seconds: number;
  readonly cpuSeconds: number;
}

export function buildReport(tally: ReplayTally, meta: ReportMeta): ReplayReport {
  const flip = (direction: FlipDirection): FlipReport => {
    const t = tally.flips[direction];
    return {
      count: t.count,
      examples: ids(t),
      byRule: groups(t.byRule).map((g) => {
        const [role, rule] = g.key.split('\0') as [RuleRole, string];
        return { ...g, key: rule, rule, role };
      }),
      byPrincipal: groups(t.byPrincipal),
      byAction: groups(t.byAction),
      byResourceType: groups(t.byResourceType),
    };
  };
  return {
    ...meta,
    rows: tally.rows,
    replayed: tally.replayed,
    unchanged: tally.unchanged,
    gateway: tally.gateway,
    routes: {
      rerouted: { count: tally.rerouted.count, examples: ids(tally.rerouted) },
      unrouted: { count: tally.unrouted.count, examples: ids(tally.unrouted), byRoute: groups(tally.unrouted.byRoute) },
    },
    flips: { ALLOW_TO_DENY: flip('ALLOW_TO_DENY'), DENY_TO_ALLOW: flip('DENY_TO_ALLOW') },
    refused: groups(tally.refused),
    admin: { count: tally.admin.count, examples: ids(tally.admin) },
    notReplayable: {
      masked: { count: tally.masked.count, examples: ids(tally.masked), paths: sortedCounts(tally.masked.byPath) },
      unreadable: { count: tally.unreadable.count, examples: ids(tally.unreadable) },
      unrecorded: { count: tally.unrecorded.count, examples: ids(tally.unrecorded), paths: sortedCounts(tally.unrecorded.byPath) },
      directoryFactsLost: { count: tally.directoryFactsLost.count, examples: ids(tally.directoryFactsLost) },
    },
    seconds: meta.seconds,
    rowsPerSecond: meta.seconds > 0 ? Math.round(tally.rows / meta.seconds) : tally.rows,
  };
}

/** Whether the report has a flip in a direction the caller did not accept. */
export function hasUnacceptedFlips(report: ReplayReport): boolean {
  return FLIP_DIRECTIONS.some((d) => report.flips[d].count > 0 && !report.allowedFlips.includes(d));
}

/**
 * Whether the report holds rows whose directory facts cannot be undone and the caller
 * did not accept them: such a row may hide a flip, so a gate cannot call it unchanged.
 */
export function hasUnacceptedUnreplayable(report: ReplayReport): boolean {
  return report.notReplayable.directoryFactsLost.count > 0 && !report.allowedUnreplayableDirectory;
}

const ARROW: Record<FlipDirection, string> = { ALLOW_TO_DENY: 'ALLOW → DENY', DENY_TO_ALLOW: 'DENY → ALLOW' };

function n(value: number): string {
  return value.toLocaleString('en-US');
}

function time(ms: number | null): string {
  return ms === null ? '(open)' : new Date(ms).toISOString();
}

/** The report for a terminal: each flip direction with its groups (the `top` largest of each), then what was not replayed. */
export function formatReplayReport(report: ReplayReport, top: number): string {
  const out: string[] = [];
  const baseline = report.baseline.kind === 'recorded' ? 'the recorded decisions' : `${report.baseline.source} (${report.baseline.version})`;
  out.push(`verdict replay ${report.source}`);
  out.push(`  candidate    ${report.candidate.source} (${report.candidate.version})`);
  out.push(`  compared to  ${baseline}`);
  const { since, until } = report.window;
  out.push(`  window       ${since === null && until === null ? 'the whole log' : `${time(since)} .. ${time(until)}`}`);
  out.push(
    `  rows         ${n(report.rows)} read, ${n(report.replayed)} replayed (${n(report.gateway)} through a gateway), ${n(report.unchanged)} unchanged, ` +
      `${n(report.flips.ALLOW_TO_DENY.count + report.flips.DENY_TO_ALLOW.count)} flipped`,
  );
  const ruleLabel = (g: ReportGroup): string => `${(g as RuleGroup).rule} (${(g as RuleGroup).role})`;
  // One column width for every section, so the counts line up.
  const width = Math.min(
    48,
    Math.max(
      8,
      ...FLIP_DIRECTIONS.flatMap((d) => {
        const f = report.flips[d];
        return [...f.byRule.slice(0, top).map(ruleLabel), ...[f.byPrincipal, f.byAction, f.byResourceType].flatMap((l) => l.slice(0, top).map((g) => g.key))].map((l) => l.length);
      }),
    ),
  );
  const routes = report.routes;
  if (routes.rerouted.count > 0 || routes.unrouted.count > 0) {
    out.push(`  routes       ${n(routes.rerouted.count)} gateway requests mapped otherwise by the candidate's routes${routes.rerouted.count > 0 ? ` (e.g. ${routes.rerouted.examples.join(', ')})` : ''}, ${n(routes.unrouted.count)} no longer routed`);
    for (const g of routes.unrouted.byRoute.slice(0, top)) out.push(`    no route  ${g.key}  ${n(g.count)}  e.g. ${g.examples.join(', ')}`);
    if (routes.unrouted.byRoute.length > top) out.push(`    … ${n(routes.unrouted.byRoute.length - top)} more (--top, or --json for all)`);
  }
  for (const direction of FLIP_DIRECTIONS) {
    const f = report.flips[direction];
    const accepted = report.allowedFlips.includes(direction) ? ' (accepted: --allow-flips)' : '';
    out.push('');
    out.push(`${ARROW[direction]}: ${n(f.count)}${accepted}`);
    if (f.count === 0) continue;
    const section = (title: string, list: readonly ReportGroup[], label: (g: ReportGroup) => string): void => {
      out.push(`  by ${title}`);
      for (const g of list.slice(0, top)) {
        out.push(`    ${label(g).padEnd(width)}  ${n(g.count).padStart(6)}  e.g. ${g.examples.join(', ')}`);
      }
      if (list.length > top) out.push(`    … ${n(list.length - top)} more (--top, or --json for all)`);
    };
    section('rule', f.byRule, ruleLabel);
    section('principal', f.byPrincipal, (g) => g.key);
    section('action', f.byAction, (g) => g.key);
    section('resource type', f.byResourceType, (g) => g.key);
  }
  out.push('');
  const refused = report.refused.reduce((sum, g) => sum + g.count, 0);
  out.push(`not replayed`);
  out.push(`  refused before the rules  ${n(refused)}${report.refused.length > 0 ? ` (${report.refused.map((g) => `${g.key} ${n(g.count)}`).join(', ')})` : ''}`);
  out.push(`  admin calls               ${n(report.admin.count)}`);
  const masked = report.notReplayable.masked;
  out.push(
    `  masked attributes         ${n(masked.count)}${masked.count > 0 ? ` (${Object.entries(masked.paths).map(([p, c]) => `${p} ${n(c)}`).join(', ')}; e.g. ${masked.examples.join(', ')})` : ''}`,
  );
  const unreadable = report.notReplayable.unreadable;
  out.push(`  unreadable requests       ${n(unreadable.count)}${unreadable.count > 0 ? ` (e.g. ${unreadable.examples.join(', ')})` : ''}`);
  const unrecorded = report.notReplayable.unrecorded;
  if (unrecorded.count > 0) {
    out.push(`  unrecorded route values   ${n(unrecorded.count)} (${Object.entries(unrecorded.paths).map(([p, c]) => `${p} ${n(c)}`).join(', ')}; e.g. ${unrecorded.examples.join(', ')})`);
  }
  const lost = report.notReplayable.directoryFactsLost;
  const lostNote = lost.count === 0 ? '' : report.allowedUnreplayableDirectory ? ' (accepted: --allow-unreplayable-directory)' : ' (fails the run; --allow-unreplayable-directory accepts them)';
  out.push(`  not replayable: directory facts recorded without what they replaced  ${n(lost.count)}${lost.count > 0 ? ` (e.g. ${lost.examples.join(', ')})` : ''}${lostNote}`);
  for (const warning of report.warnings) out.push(`warning: ${warning}`);
  out.push('');
  out.push(`${n(report.rows)} rows in ${report.seconds.toFixed(2)} s (${n(report.rowsPerSecond)} rows/s; ${report.cpuSeconds.toFixed(2)} s of CPU)`);
  return `${out.join('\n')}\n`;
}
