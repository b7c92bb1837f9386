import { describe, expect, it } from 'vitest';
import type { Alert } from '../../src/analysis/alert.js';
import { AlertFanout, AlertHub, WATCH_BUFFER } from '../../src/server/alerts.js';

function alert(k: number, type: Alert['type'] = 'volume'): Alert {
  return { id: `al_${k}`, type, subject: { kind: 'principal', id: `p${k % 3}` }, windowStart: 0, windowEnd: 3_600_000, observed: 2, threshold: 1, decisionIds: [], raisedAt: k, summary: 's' };
}

describe('alert fan-out', () => {
  it('reaches every sink, in order, even when one throws; a removed sink hears nothing more', () => {
    const heard: string[] = [];
    const fanout = new AlertFanout([{ publish: (a) => heard.push(`first ${a.id}`) }]);
    fanout.add({ publish: () => { throw new Error('broken sink'); } });
    const remove = fanout.add({ publish: (a) => heard.push(`last ${a.id}`) });
    fanout.publish(alert(1));
    remove();
    fanout.publish(alert(2));
    expect(heard).toEqual(['first al_1', 'last al_1', 'first al_2']);
  });

  it('drops a WatchAlerts subscriber that falls behind, without holding up the others', () => {
    const hub = new AlertHub();
    let stuckDropped = false;
    const stuck = { send: () => undefined, drop: () => (stuckDropped = true), end: () => undefined };
    const got: string[] = [];
    const keeping = { send: (a: Alert, sent: () => void) => { got.push(a.id); sent(); }, drop: () => { throw new Error('not this one'); }, end: () => undefined };
    hub.subscribe({ types: [], subjectId: '' }, stuck);
    hub.subscribe({ types: [], subjectId: '' }, keeping);
    for (let k = 0; k < WATCH_BUFFER + 10; k++) hub.publish(alert(k));
    expect(stuckDropped).toBe(true);
    expect(hub.dropped).toBe(1);
    expect(hub.size).toBe(1);
    expect(got).toHaveLength(WATCH_BUFFER + 10);
  });

  it('filters by type and subject, and ends every stream on close', () => {
    const hub = new AlertHub();
    const got: string[] = [];
    let ended = 0;
    hub.subscribe({ types: ['probing'], subjectId: 'p1' }, { send: (a, sent) => { got.push(a.id); sent(); }, drop: () => undefined, end: () => ended++ });
    hub.publish(alert(1, 'volume'));
    hub.publish(alert(1, 'probing'));
    hub.publish(alert(2, 'probing'));
    expect(got).toEqual(['al_1']);
    hub.close();
    expect(ended).toBe(1);
    hub.subscribe({ types: [], subjectId: '' }, { send: () => undefined, drop: () => undefined, end: () => ended++ });
    expect(ended).toBe(2);
    expect(hub.size).toBe(0);
  });
});
