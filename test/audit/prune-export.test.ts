import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { beforeAll, describe, expect, it } from 'vitest';
import { LONGEST_STORED_VALUE } from '../../src/decisions/columns.js';
import { BASE_TIME, appendRows, audit, copyLog, failure, makeLog, reopen, sqlite3, tamperSql, tempDir, type TestLog } from './helpers.js';

let intact: TestLog;
const minute = 60_000;
// Row seq N was made at BASE_TIME + (N - 1) minutes.
const timeOfSeq = (seq: number): string => new Date(BASE_TIME + (seq - 1) * minute).toISOString();

beforeAll(async () => {
  intact = await makeLog(40, { everyRows: 10 });
});

function rowsIn(file: string): { first: number; last: number; count: number } {
  const db = new Database(file, { readonly: true });
  const r = db.prepare('SELECT min(seq) AS first, max(seq) AS last, count(*) AS count FROM decisions').get() as { first: number; last: number; count: number };
  db.close();
  return r;
}

describe('verdict audit prune', () => {
  it('removes old rows, signs an anchor, and what remains verifies; new rows continue the chain', async () => {
    const t = copyLog(intact);
    const dry = await audit('prune', '--db', t.db, '--before', timeOfSeq(16), '--dry-run');
    expect(dry).toMatchObject({ code: 0, stderr: '' });
    expect(dry.stdout).toMatch(/would remove 15 rows \(seq 1\.\.15\)/);
    expect(rowsIn(t.db).count).toBe(40);

    const exported = path.join(t.dir, 'pruned.jsonl');
    const run = await audit('prune', '--db', t.db, '--before', timeOfSeq(16), '--export', exported);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/exported 15 rows \(seq 1\.\.15\)/);
    expect(run.stdout).toMatch(/removed 15 rows \(seq 1\.\.15\)/);
    expect(run.stdout).toMatch(/anchor: seq 15 hash [0-9a-f]{64} signed by ed25519:/);
    expect(rowsIn(t.db)).toEqual({ first: 16, last: 40, count: 25 });

    const db = new Database(t.db, { readonly: true });
    expect(db.prepare('SELECT kind, seq FROM checkpoints ORDER BY seq').all()).toEqual([
      { kind: 'anchor', seq: 15 },
      { kind: 'checkpoint', seq: 20 },
      { kind: 'checkpoint', seq: 30 },
      { kind: 'checkpoint', seq: 40 },
    ]);
    expect(db.prepare('SELECT count(*) FROM audit_guard').pluck().get()).toBe(0);
    db.close();

    const verified = await audit('verify', '--db', t.db, '--pubkey', t.pubkey);
    expect(verified.code).toBe(0);
    expect(verified.stdout).toMatch(/25 rows, seq 16\.\.40 from the prune anchor at seq 15: intact/);
    // The pruned rows, exported first, verify on their own.
    const alone = await audit('verify', '--export', exported, '--pubkey', t.pubkey);
    expect(alone.code).toBe(0);
    expect(alone.stdout).toMatch(/15 rows, seq 1\.\.15 from the start \(genesis\): intact/);

    const log = await reopen(t);
    await appendRows(log, 40, 5);
    await log.close();
    const after = await audit('verify', '--db', t.db, '--pubkey', t.pubkey);
    expect(after.code).toBe(0);
    expect(after.stdout).toMatch(/30 rows, seq 16\.\.45/);
  });

  it('prunes in short transactions, one anchor replacing the last', async () => {
    const t = copyLog(intact);
    const { pruneLog } = await import('../../src/audit/prune.js');
    const { readPrivateKey, keyIdOf } = await import('../../src/decisions/keys.js');
    const { createPublicKey, sign } = await import('node:crypto');
    const key = readPrivateKey(t.signingKey);
    const publicKey = createPublicKey(key);
    const result = await pruneLog(t.db, {
      before: BASE_TIME + 25 * minute,
      signer: { keyId: keyIdOf(publicKey), sign: (m) => sign(null, m, key) },
      publicKeys: [publicKey],
      chunkRows: 7,
    });
    expect(result).toMatchObject({ refused: false, rows: 25, fromSeq: 1, toSeq: 25, anchor: { kind: 'anchor', seq: 25 } });
    expect((await audit('verify', '--db', t.db, '--pubkey', t.pubkey)).code).toBe(0);
  });

  it('signs the anchor as v2, naming the last checkpoint at or before it; checkpoints naming pruned ones still verify', async () => {
    const t = copyLog(intact);
    expect((await audit('prune', '--db', t.db, '--before', timeOfSeq(26))).code).toBe(0);
    const db = new Database(t.db, { readonly: true });
    expect(db.prepare('SELECT kind, seq, previous_seq FROM checkpoints ORDER BY seq').raw(true).all()).toEqual([
      ['anchor', 25, 20],
      ['checkpoint', 30, 20],
      ['checkpoint', 40, 30],
    ]);
    db.close();
    const verified = await audit('verify', '--db', t.db, '--pubkey', t.pubkey);
    expect(verified.code).toBe(0);
    expect(verified.stdout).toMatch(/15 rows, seq 26\.\.40 from the prune anchor at seq 25: intact/);
    const tampered = copyLog(t);
    tamperSql(tampered.db, 'DELETE FROM checkpoints WHERE seq = 30;');
    const broken = await audit('verify', '--db', tampered.db, '--pubkey', tampered.pubkey);
    expect(broken.code).toBe(1);
    expect(failure(broken.stdout)).toMatch(/^FAILED: checkpoint-removed at seq 30: the checkpoint at seq 40 .* names seq 30 /);
  });

  it('prunes everything and the writer continues the chain from the anchor', async () => {
    const t = copyLog(intact);
    const run = await audit('prune', '--db', t.db, '--before', '1h');
    expect(run.code).toBe(0);
    expect(rowsIn(t.db).count).toBe(0);
    const empty = await audit('verify', '--db', t.db, '--pubkey', t.pubkey);
    expect(empty.code).toBe(0);
    const log = await reopen(t);
    await appendRows(log, 40, 3);
    await log.close();
    expect(rowsIn(t.db)).toEqual({ first: 41, last: 43, count: 3 });
    const verified = await audit('verify', '--db', t.db, '--pubkey', t.pubkey);
    expect(verified.code).toBe(0);
    expect(verified.stdout).toMatch(/3 rows, seq 41\.\.43 from the prune anchor at seq 40: intact/);
  });

  it('refuses to prune a log that does not verify, and removes nothing', async () => {
    const t = copyLog(intact);
    tamperSql(t.db, "UPDATE decisions SET principal_id = 'mallory' WHERE seq = 4");
    const run = await audit('prune', '--db', t.db, '--before', timeOfSeq(20));
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^verdict audit prune: refusing to prune .*changed at seq 4/);
    expect(rowsIn(t.db).count).toBe(40);
  });

  it('says so when nothing is old enough', async () => {
    const t = copyLog(intact);
    const run = await audit('prune', '--db', t.db, '--before', '2000-01-01');
    expect(run).toMatchObject({ code: 0, stderr: '' });
    expect(run.stdout).toMatch(/^nothing to prune/);
  });

  it('a deleted prefix without an anchor, or with a forged anchor, does not verify', async () => {
    const t = copyLog(intact);
    tamperSql(t.db, 'DELETE FROM decisions WHERE seq <= 15');
    expect(failure((await audit('verify', '--db', t.db, '--pubkey', t.pubkey)).stdout)).toMatch(/^FAILED: deleted at seq 1: rows 1\.\.15 are missing/);

    // An intruder turns the real checkpoint at 20 into an "anchor": the kind is signed, so it fails.
    const u = copyLog(intact);
    tamperSql(u.db, "DELETE FROM decisions WHERE seq <= 20; UPDATE checkpoints SET kind = 'anchor' WHERE seq = 20;");
    expect(failure((await audit('verify', '--db', u.db, '--pubkey', u.pubkey)).stdout)).toMatch(/^FAILED: bad-signature at seq 20: the prune anchor at seq 20/);
  });

  it('prune usage errors are one line, exit 2; a missing signing key exit 4', async () => {
    const t = copyLog(intact);
    for (const argv of [['prune', '--db', t.db], ['prune', '--db', t.db, '--before', 'last tuesday']]) {
      const run = await audit(...argv);
      expect(run.code, argv.join(' ')).toBe(2);
      expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
    }
    fs.rmSync(t.signingKey);
    const run = await audit('prune', '--db', t.db, '--before', '1h');
    expect(run.code).toBe(4);
    expect(run.stderr).toMatch(/^verdict audit prune: no signing key at .*audit-signing-key\.pem/);
  });
});

describe('verdict audit export', () => {
  it('writes JSON lines with hashes and checkpoints, which verify on their own', async () => {
    const out = path.join(tempDir(), 'all.jsonl');
    const run = await audit('export', '--db', intact.db, '--format', 'jsonl', '--out', out);
    expect(run).toMatchObject({ code: 0, stdout: '' });
    expect(run.stderr).toMatch(/exported 40 rows \(seq 1\.\.40\) and 4 checkpoints/);
    const lines = fs.readFileSync(out, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines[0]).toMatchObject({ type: 'header', format: 'verdict.export.v2', fromSeq: 1, toSeq: 40 });
    expect(lines[1]).toMatchObject({ type: 'decision', seq: 1, effect: 'DENY', ruleIds: [], request: { principal: { roles: ['data_scientist'] } } });
    expect(lines[1]?.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(lines.filter((l) => l.type === 'checkpoint').map((l) => l.seq)).toEqual([10, 20, 30, 40]);
    expect(lines.at(-1)).toMatchObject({ type: 'end', rows: 40, lastSeq: 40 });
    const verified = await audit('verify', '--export', out, '--pubkey', intact.pubkey);
    expect(verified.code).toBe(0);
    expect(verified.stdout).toMatch(/OK: the export is intact/);
  });

  it('carries the previous seq of each checkpoint, and an export with a checkpoint line removed breaks', async () => {
    const out = path.join(tempDir(), 'links.jsonl');
    expect((await audit('export', '--db', intact.db, '--out', out)).code).toBe(0);
    const lines = fs.readFileSync(out, 'utf8').trimEnd().split('\n');
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(parsed[0]).toMatchObject({ checkpointFormat: 'verdict.checkpoint.v3' });
    expect(parsed.filter((l) => l.type === 'checkpoint').map((l) => [l.seq, l.previousSeq])).toEqual([[10, 0], [20, 10], [30, 20], [40, 30]]);
    const cut = path.join(tempDir(), 'cut.jsonl');
    fs.writeFileSync(cut, `${lines.filter((_, i) => !(parsed[i]?.type === 'checkpoint' && parsed[i]?.seq === 20)).join('\n')}\n`);
    const run = await audit('verify', '--export', cut, '--pubkey', intact.pubkey);
    expect(run.code).toBe(1);
    expect(failure(run.stdout)).toMatch(/^FAILED: checkpoint-removed at seq 20: the checkpoint at seq 30 .* names seq 20 as the checkpoint signed before it, which is missing/);
    // An export starting after a checkpoint does not hold the one its first checkpoint names: not a break.
    const since = path.join(tempDir(), 'since-links.jsonl');
    expect((await audit('export', '--db', intact.db, '--since', timeOfSeq(25), '--out', since)).code).toBe(0);
    expect((await audit('verify', '--export', since, '--pubkey', intact.pubkey)).code).toBe(0);
  });

  it('verdict audit checkpoint --export writes the previous seq and the v2 message, and --from-checkpoint reads them back', async () => {
    const file = path.join(tempDir(), 'cp.json');
    expect((await audit('checkpoint', '--db', intact.db, '--export', file)).code).toBe(0);
    const exported = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    expect(exported).toMatchObject({ kind: 'checkpoint', seq: 40, previousSeq: 30 });
    expect(exported.message).toMatch(/^\["verdict\.checkpoint\.v2","checkpoint",40,"[0-9a-f]{64}",\d+,30\]$/);
    const matched = await audit('verify', '--db', intact.db, '--pubkey', intact.pubkey, '--from-checkpoint', file);
    expect(matched.code).toBe(0);
    expect(matched.stdout).toMatch(/exported\s+checkpoint at seq 40 matched/);
    // The previous seq is signed: changed in the file, the signature fails.
    const altered = path.join(tempDir(), 'cp-altered.json');
    fs.writeFileSync(altered, JSON.stringify({ ...exported, previousSeq: 20 }));
    const bad = await audit('verify', '--db', intact.db, '--pubkey', intact.pubkey, '--from-checkpoint', altered);
    expect(bad.code).toBe(1);
    expect(failure(bad.stdout)).toMatch(/^FAILED: bad-signature at seq 40: the exported checkpoint/);
  });

  it('names the checkpoint file v2 when it carries previousSeq, and still reads a v1 file of an earlier release', async () => {
    const v2 = path.join(tempDir(), 'cp-v2.json');
    expect((await audit('checkpoint', '--db', intact.db, '--export', v2)).code).toBe(0);
    const written = JSON.parse(fs.readFileSync(v2, 'utf8')) as Record<string, unknown>;
    expect(written).toMatchObject({ format: 'verdict.checkpoint-export.v2', previousSeq: 30 });
    // Without previousSeq, a v2 file cannot say which message was signed.
    const stripped = path.join(tempDir(), 'cp-v2-stripped.json');
    fs.writeFileSync(stripped, JSON.stringify({ ...written, previousSeq: undefined }));
    const refused = await audit('verify', '--db', intact.db, '--pubkey', intact.pubkey, '--from-checkpoint', stripped);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toMatch(/previousSeq must be an integer in a verdict\.checkpoint-export\.v2 file/);
    // A v2 checkpoint in a file named v1, as the release before the v2 name wrote it, still reads; its
    // signature decides which message was signed, so an edited previousSeq is a bad signature.
    const earlier = path.join(tempDir(), 'cp-earlier-release.json');
    fs.writeFileSync(earlier, JSON.stringify({ ...written, format: 'verdict.checkpoint-export.v1' }));
    const readEarlier = await audit('verify', '--db', intact.db, '--pubkey', intact.pubkey, '--from-checkpoint', earlier);
    expect(readEarlier.code).toBe(0);
    const edited = path.join(tempDir(), 'cp-earlier-edited.json');
    fs.writeFileSync(edited, JSON.stringify({ ...written, format: 'verdict.checkpoint-export.v1', previousSeq: (written.previousSeq as number) + 1 }));
    const readEdited = await audit('verify', '--db', intact.db, '--pubkey', intact.pubkey, '--from-checkpoint', edited);
    expect(readEdited.code).toBe(1);
    expect(failure(readEdited.stdout)).toMatch(/^FAILED: bad-signature at seq 40: the exported checkpoint/);
    // A file of no known format is refused.
    const unknown = path.join(tempDir(), 'cp-unknown.json');
    fs.writeFileSync(unknown, JSON.stringify({ ...written, format: 'verdict.checkpoint-export.v9' }));
    const odd = await audit('verify', '--db', intact.db, '--pubkey', intact.pubkey, '--from-checkpoint', unknown);
    expect(odd.code).toBe(4);
    expect(odd.stderr).toMatch(/format must be verdict\.checkpoint-export\.v3, verdict\.checkpoint-export\.v2 or verdict\.checkpoint-export\.v1/);

    // A log of an earlier release, whose checkpoints are v1: its export is the v1 file that release wrote (no previousSeq).
    const legacy = tempDir();
    const fixture = fileURLToPath(new URL('../fixtures/legacy-log-v1', import.meta.url));
    for (const name of fs.readdirSync(fixture)) fs.copyFileSync(path.join(fixture, name), path.join(legacy, name));
    const legacyDb = path.join(legacy, 'decisions.db');
    const v1 = path.join(tempDir(), 'cp-v1.json');
    expect((await audit('checkpoint', '--db', legacyDb, '--export', v1)).code).toBe(0);
    const old = JSON.parse(fs.readFileSync(v1, 'utf8')) as Record<string, unknown>;
    expect(old).toMatchObject({ format: 'verdict.checkpoint-export.v1', previousSeq: null });
    fs.writeFileSync(v1, JSON.stringify({ ...old, previousSeq: undefined }, null, 2));
    const matched = await audit('verify', '--db', legacyDb, '--from-checkpoint', v1);
    expect(matched.code).toBe(0);
    expect(matched.stdout).toMatch(/exported\s+checkpoint at seq \d+ matched/);
  });

  it('--since starts at the checkpoint before it, so the export is anchored', async () => {
    const out = path.join(tempDir(), 'since.jsonl');
    expect((await audit('export', '--db', intact.db, '--since', timeOfSeq(21), '--out', out)).code).toBe(0);
    const verified = await audit('verify', '--export', out, '--pubkey', intact.pubkey);
    expect(verified.code).toBe(0);
    expect(verified.stdout).toMatch(/20 rows, seq 21\.\.40 from the checkpoint at seq 20: intact/);
    // Starting between checkpoints, the link to earlier rows is taken on trust, and the report says so.
    const mid = path.join(tempDir(), 'mid.jsonl');
    expect((await audit('export', '--db', intact.db, '--since', timeOfSeq(25), '--until', timeOfSeq(36), '--out', mid)).code).toBe(0);
    const midRun = await audit('verify', '--export', mid, '--pubkey', intact.pubkey);
    expect(midRun.code).toBe(0);
    expect(midRun.stdout).toMatch(/11 rows, seq 25\.\.35 from seq 24 \(unanchored\)/);
    expect(midRun.stdout).toMatch(/warning\s+the export starts at seq 25 with no checkpoint at seq 24/);
  });

  it('catches a changed, deleted, swapped or cut-off export', async () => {
    const out = path.join(tempDir(), 'x.jsonl');
    await audit('export', '--db', intact.db, '--out', out);
    const lines = fs.readFileSync(out, 'utf8').trimEnd().split('\n');
    const at = (seq: number): number => lines.findIndex((l) => l.includes('"type":"decision"') && l.includes(`"seq":${seq},`));
    const check = async (edited: string[], expected: RegExp): Promise<void> => {
      fs.writeFileSync(out, `${edited.join('\n')}\n`);
      const run = await audit('verify', '--export', out, '--pubkey', intact.pubkey);
      expect(run.code).toBe(1);
      expect(failure(run.stdout)).toMatch(expected);
    };
    const changed = [...lines];
    changed[at(7)] = (changed[at(7)] as string).replace('"principalId":"user-6"', '"principalId":"mallory"');
    await check(changed, /^FAILED: changed at seq 7/);
    await check(lines.filter((_, i) => i !== at(7)), /^FAILED: deleted at seq 7/);
    const swapped = [...lines];
    [swapped[at(7)], swapped[at(8)]] = [swapped[at(8)] as string, swapped[at(7)] as string];
    await check(swapped, /^FAILED: reordered at seq 7/);
    // Cut after row 33: the checkpoint line for 40 is gone too, but the end line still says 40 rows.
    await check([...lines.slice(0, at(34)), lines.at(-1) as string], /^FAILED: truncated at seq 34/);
    // Cut with no end line at all: the header still says where the export ends.
    await check(lines.slice(0, at(34)), /^FAILED: truncated at seq 34: the export's header says it ends at seq 40/);
  });

  it('refuses an export whose beginning was cut off, down to a checkpoint or not', async () => {
    const out = path.join(tempDir(), 'top.jsonl');
    await audit('export', '--db', intact.db, '--out', out);
    const lines = fs.readFileSync(out, 'utf8').trimEnd().split('\n');
    const afterCheckpoint10 = lines.findIndex((l) => l.includes('"type":"checkpoint"') && l.includes('"seq":10,'));
    const check = async (edited: string[], expected: RegExp): Promise<void> => {
      fs.writeFileSync(out, `${edited.join('\n')}\n`);
      const run = await audit('verify', '--export', out, '--pubkey', intact.pubkey);
      expect(run.code).toBe(1);
      expect(failure(run.stdout)).toMatch(expected);
    };
    // The rest starts at the signed checkpoint at seq 10, which alone looks like an export of seq 11 on.
    await check([lines[0] as string, ...lines.slice(afterCheckpoint10)], /^FAILED: truncated at seq 1: the export's header says it starts at seq 1, but its first row is seq 11: rows 1\.\.10 are missing/);
    await check(lines.slice(afterCheckpoint10), /^FAILED: truncated at seq 11: the export has no header line, which verdict audit export writes first: its beginning was cut off, so rows before seq 11 may be missing/);
    await check(lines.slice(1), /^FAILED: truncated at seq 1: the export has no header line/);
    // A header moved below the rows does not stand for the first line.
    fs.writeFileSync(out, `${[...lines.slice(1, 3), lines[0], ...lines.slice(3)].join('\n')}\n`);
    const moved = await audit('verify', '--export', out, '--pubkey', intact.pubkey);
    expect(moved.code).toBe(4);
    expect(moved.stderr).toMatch(/top\.jsonl:3: a header line after the export's first line/);
  });

  it('carries each row\'s details and canonical format, and old rows as they were, so a mixed log verifies from its export', async () => {
    const t = copyLog(intact);
    const log = await reopen(t);
    await log.append({ ...(await import('./helpers.js')).record(40), details: { http: { method: 'GET', path: '/v1/models' } } });
    await log.close();
    // Make rows 1..40 what the previous release wrote: format 1 (their hashes cover no details).
    tamperSql(t.db, 'UPDATE decisions SET format = 1 WHERE seq <= 40');
    const { rechain } = await import('./helpers.js');
    rechain(t.db, 1);
    tamperSql(t.db, 'DELETE FROM checkpoints');
    expect((await audit('verify', '--db', t.db)).code).toBe(0);
    const out = path.join(t.dir, 'mixed.jsonl');
    expect((await audit('export', '--db', t.db, '--out', out)).code).toBe(0);
    const lines = fs.readFileSync(out, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const v1 = lines.find((l) => l.seq === 40);
    const v2 = lines.find((l) => l.seq === 41);
    expect(v1).not.toHaveProperty('details');
    expect(v1).not.toHaveProperty('format');
    expect(v2).toMatchObject({ format: 2, details: { http: { method: 'GET', path: '/v1/models' } } });
    expect((await audit('verify', '--export', out, '--pubkey', t.pubkey)).code).toBe(0);
    // The details are chained: changing them in the export is a break.
    fs.writeFileSync(out, fs.readFileSync(out, 'utf8').replace('"/v1/models"', '"/v1/other"'));
    expect(failure((await audit('verify', '--export', out, '--pubkey', t.pubkey)).stdout)).toMatch(/^FAILED: changed at seq 41/);
  });

  it('keeps the exact stored text where re-serialising would change it', async () => {
    const t = copyLog(intact);
    // A request stored with spacing JSON.stringify would not produce, re-chained correctly.
    tamperSql(t.db, `UPDATE decisions SET request = '{ "principal": {"roles": [], "attributes": {}}, "resource": {"attributes": {}}, "context": {"attributes": {}} }' WHERE seq = 5`);
    const { rechain } = await import('./helpers.js');
    rechain(t.db, 5);
    tamperSql(t.db, 'DELETE FROM checkpoints');
    const out = path.join(t.dir, 'text.jsonl');
    await audit('export', '--db', t.db, '--out', out);
    const line = fs.readFileSync(out, 'utf8').split('\n').find((l) => l.includes('"seq":5,'));
    expect(JSON.parse(line ?? '{}')).toMatchObject({ requestText: expect.stringContaining('{ "principal"') as string, request: { principal: { roles: [] } } });
    expect((await audit('verify', '--export', out, '--pubkey', t.pubkey)).code).toBe(0);
  });

  // What a SIEM reads of a line (the parsed values, `time`, the first copy of a member)
  // must be what verify checked; each of these used to verify OK while showing another decision.
  it('refuses a line that shows a SIEM something other than what the chain covers', async () => {
    const out = path.join(tempDir(), 'siem.jsonl');
    await audit('export', '--db', intact.db, '--out', out);
    const lines = fs.readFileSync(out, 'utf8').trimEnd().split('\n');
    const index = lines.findIndex((l) => l.includes('"type":"decision"') && l.includes('"seq":7,'));
    const original = lines[index] as string;
    const row = JSON.parse(original) as Record<string, unknown>;
    const altered = (line: string): string[] => lines.map((l, i) => (i === index ? line : l));
    const withMembers = (extra: Record<string, unknown>): string => JSON.stringify({ ...row, ...extra });
    for (const [name, line, expected] of [
      [
        'the request rewritten, its original text kept as requestText for the hash',
        withMembers({ requestText: JSON.stringify(row.request), request: { principal: { roles: ['admin'], attributes: {} }, resource: { attributes: {} }, context: { attributes: {} } } }),
        /:\d+: request does not hold what requestText \(the text the chain covers\) says/,
      ],
      ['time moved a day while timeMs stays', withMembers({ time: new Date((row.timeMs as number) + 86_400_000).toISOString() }), /:\d+: time "[^"]+" is not timeMs \d+/],
      ['effect given twice, ALLOW first for a reader that keeps the first copy', original.replace('{"type":"decision",', '{"type":"decision","effect":"ALLOW",'), /:\d+: effect is given twice/],
      ['a member verdict never writes', withMembers({ overrideEffect: 'ALLOW' }), /:\d+: "overrideEffect" is not a member verdict writes on a decision line/],
    ] as const) {
      fs.writeFileSync(out, `${altered(line).join('\n')}\n`);
      const run = await audit('verify', '--export', out, '--pubkey', intact.pubkey);
      expect(run.code, name).toBe(4);
      expect(run.stderr, name).toMatch(expected);
      expect(run.stderr.trimEnd().split('\n'), name).toHaveLength(1);
    }
    fs.writeFileSync(out, `${lines.join('\n')}\n`);
    expect((await audit('verify', '--export', out, '--pubkey', intact.pubkey)).code).toBe(0);
  });

  it('rejects a bad format and a file that is not an export with one line', async () => {
    const bad = await audit('export', '--db', intact.db, '--format', 'csv');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe('verdict audit export: --format must be jsonl, not "csv"; see --help\n');
    const notExport = path.join(tempDir(), 'x.jsonl');
    fs.writeFileSync(notExport, '{"hello":1}\n');
    const run = await audit('verify', '--export', notExport);
    expect(run.code).toBe(4);
    expect(run.stderr).toMatch(/^verdict audit verify: .*x\.jsonl:1: unknown line type undefined/);
    expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
  });

  it('refuses a line longer than any line of an export at once, naming it, instead of gathering it for a minute', async () => {
    const out = path.join(tempDir(), 'long.jsonl');
    await audit('export', '--db', intact.db, '--out', out);
    const [header] = fs.readFileSync(out, 'utf8').split('\n');
    // The header, then one line of 'a' a chunk longer than one JavaScript string can be (it used to take 67 s and 2.4 GB, then fail with a V8 error).
    const fd = fs.openSync(out, 'w');
    fs.writeSync(fd, `${header}\n`);
    const chunk = Buffer.alloc(4 << 20, 'a');
    for (let written = 0; written <= LONGEST_STORED_VALUE; written += chunk.length) fs.writeSync(fd, chunk);
    fs.closeSync(fd);
    const started = performance.now();
    const run = await audit('verify', '--export', out, '--pubkey', intact.pubkey);
    fs.rmSync(out);
    expect(run.code).toBe(4);
    expect(run.stderr).toMatch(/^verdict audit verify: .*long\.jsonl:2: the line is longer than any line of an export \(536,870,888 characters/);
    expect(performance.now() - started).toBeLessThan(20_000);
  }, 60_000);
});

describe('sqlite3 sees the guard table empty outside a prune', () => {
  it('a DELETE through the guard is refused when no prune is running', () => {
    const t = copyLog(intact);
    expect(sqlite3(t.db, 'DELETE FROM decisions WHERE seq = 1').stderr).toMatch(/append-only/);
  });
});
