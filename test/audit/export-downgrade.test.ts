import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { readExportFile } from '../../src/audit/export-reader.js';
import { chainHash } from '../../src/decisions/chain.js';
import { BASE_TIME, audit, failure, makeLog, tempDir, type TestLog } from './helpers.js';

/**
 * A signed export (verdict.export.v2) of a log written by the real writer
 * thread, whose checkpoints name no replica (format v2: no server named the
 * log), cut or altered by someone without the signing key, with its header
 * rewritten as an unsigned v1 one to drop the signature. Nothing else in such
 * an export shows the header was replaced, so each attack must fail on the
 * unsigned header itself unless the verifier accepts it knowingly.
 */

type Line = Record<string, unknown>;

let log: TestLog;
/** The export's lines: rows 1..35, checkpoints at 10, 20 and 30, so rows 31..35 follow the last checkpoint. */
let lines: Line[];

beforeAll(async () => {
  log = await makeLog(40, { everyRows: 10 });
  const out = path.join(tempDir(), 'signed.jsonl');
  // Row seq N was made at BASE_TIME + (N - 1) minutes: up to the row before seq 36.
  const run = await audit('export', '--db', log.db, '--until', new Date(BASE_TIME + 35 * 60_000).toISOString(), '--out', out);
  expect(run.code, run.stderr).toBe(0);
  lines = fs.readFileSync(out, 'utf8').trimEnd().split('\n').map((text) => JSON.parse(text) as Line);
});

const header = (): Line => lines[0] as Line;
const end = (): Line => lines[lines.length - 1] as Line;
const body = (): Line[] => lines.slice(1, -1);

/** The header as an earlier release wrote it: format v1, no signature or chain hashes. */
function asV1(changes: Line = {}): Line {
  const { signature: _signature, startHash: _start, endHash: _end, keyId: _keyId, ...rest } = header();
  return { ...rest, format: 'verdict.export.v1', ...changes };
}

function write(name: string, content: readonly Line[]): string {
  const file = path.join(tempDir(), name);
  fs.writeFileSync(file, `${content.map((line) => JSON.stringify(line)).join('\n')}\n`);
  return file;
}

function verify(file: string, ...more: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return audit('verify', '--export', file, '--pubkey', log.pubkey, ...more);
}

/** Rows (and the checkpoints with them) from `first` to `last` seq, as the lines of an export of that range. */
function range(first: number, last: number): Line[] {
  return body().filter((line) => {
    const seq = line.seq as number;
    return line.type === 'decision' ? seq >= first && seq <= last : seq >= first - 1 && seq <= last;
  });
}

/**
 * The export's body and end line with the hashes from seq `from` on recomputed
 * over the rows' content, as someone who changed a row there and knows the
 * (public) canonical form would.
 */
function rechained(content: Line[], from: number): Line[] {
  const rows = readExportFile(write('to-rechain.jsonl', [header(), ...content, end()])).rows;
  const bySeq = new Map(rows.map((row) => [row.seq, row]));
  let prev = bySeq.get(from)?.prevHash as Buffer;
  const out = content.map((line) => {
    const row = line.type === 'decision' ? bySeq.get(line.seq as number) : undefined;
    if (row === undefined || row.seq < from) return line;
    const hash = chainHash(prev, row.format as number, row.seq, row.values) as Buffer;
    const rewritten = { ...line, prevHash: prev.toString('hex'), hash: hash.toString('hex') };
    prev = hash;
    return rewritten;
  });
  return [...out, { ...end(), lastHash: prev.toString('hex') }];
}

/** Each thing an unsigned header lets its writer claim, as the export that claims it. */
function attacks(): Array<{ name: string; claims: string; v1: Line[]; signed: Line[] | null }> {
  const cutHead = range(11, 35);
  const cutTail = range(1, 30);
  const lastRow = (rows: Line[]): Line => rows.filter((line) => line.type === 'decision').at(-1) as Line;
  const flipped = rechained(
    body().map((line) => (line.type === 'decision' && line.seq === 34 ? { ...line, effect: 'ALLOW', reason: 'ALLOWED_BY_RULE' } : line)),
    34,
  );
  return [
    { name: 'header only', claims: 'seq 1..35 from the start', v1: [asV1(), ...body(), end()], signed: null },
    {
      name: 'head cut back to the checkpoint at seq 10, fromSeq rewritten',
      claims: 'seq 11..35 from the checkpoint at seq 10',
      v1: [asV1({ fromSeq: 11 }), ...cutHead, { ...end(), rows: 25 }],
      signed: [{ ...header(), fromSeq: 11 }, ...cutHead, { ...end(), rows: 25 }],
    },
    {
      name: 'tail cut back to the checkpoint at seq 30, toSeq and end line rewritten',
      claims: 'seq 1..30 from the start',
      v1: [asV1({ toSeq: 30 }), ...cutTail, { ...end(), rows: 30, lastSeq: 30, lastHash: lastRow(cutTail).hash }],
      signed: [{ ...header(), toSeq: 30 }, ...cutTail, { ...end(), rows: 30, lastSeq: 30, lastHash: lastRow(cutTail).hash }],
    },
    {
      name: "relabelled as replica alpha's",
      claims: 'seq 1..35 from the start',
      v1: [asV1({ replicaId: 'alpha' }), ...body(), end()],
      signed: [{ ...header(), replicaId: 'alpha' }, ...body(), end()],
    },
    {
      name: 'export time moved a year back',
      claims: 'seq 1..35 from the start',
      v1: [asV1({ exportedAt: '2024-06-01T12:00:00.000Z' }), ...body(), end()],
      signed: [{ ...header(), exportedAt: '2024-06-01T12:00:00.000Z' }, ...body(), end()],
    },
    {
      name: 'the DENY at seq 34 (after the last checkpoint) made an ALLOW, the rows after it rechained',
      claims: 'seq 1..35 from the start',
      v1: [asV1(), ...flipped],
      signed: [header(), ...flipped],
    },
  ];
}

describe('an export whose signed header was rewritten as unsigned (verdict.export.v1)', () => {
  it('the export as written verifies, its header signed', async () => {
    const result = await verify(write('intact.jsonl', lines));
    expect(header()).toMatchObject({ format: 'verdict.export.v2', fromSeq: 1, toSeq: 35, replicaId: null });
    expect(body().filter((line) => line.type === 'checkpoint').map((line) => line.seq)).toEqual([10, 20, 30]);
    expect(result.stdout).toMatch(/header +signed; the signature and the range it signs verified/);
    expect(result.stdout).toContain('OK: the export is intact');
    expect(result.code).toBe(0);
  });

  it('each attack fails as unsigned-header, exit 1, saying what is unproven and how to accept an earlier release', async () => {
    for (const attack of attacks()) {
      const result = await verify(write('downgraded.jsonl', attack.v1));
      expect(result.code, attack.name).toBe(1);
      expect(failure(result.stdout), attack.name).toMatch(
        /^FAILED: unsigned-header: the export's header \(seq \d+\.\.\d+, replica \w+\) is unsigned \(format verdict\.export\.v1\): its range, replica and time are unproven, and so are the rows after its last checkpoint\. Releases before headers were signed wrote such headers, but a signed export cut or altered, with its header rewritten as v1, reads the same\. .*run again with --allow-unsigned-header/,
      );
      expect(result.stdout, attack.name).toMatch(/header +not authenticated: unsigned/);
    }
  });

  it('the same attacks on the signed header fail its signature or the hashes it signs', async () => {
    for (const attack of attacks()) {
      if (attack.signed === null) continue;
      const result = await verify(write('relabelled.jsonl', attack.signed));
      expect(result.code, attack.name).toBe(1);
      expect(failure(result.stdout), attack.name).toMatch(/^FAILED: (bad-signature|changed) at seq \d+: (the export's header .* has an invalid signature|the last row .* does not have the hash)/);
    }
  });

  it('with --allow-unsigned-header each verifies as what its header claims, and the report says the header was not authenticated', async () => {
    for (const attack of attacks()) {
      const result = await verify(write('accepted.jsonl', attack.v1), '--allow-unsigned-header');
      expect(result.code, attack.name).toBe(0);
      expect(result.stdout, attack.name).toContain(attack.claims);
      expect(result.stdout, attack.name).toMatch(/header +not authenticated: unsigned \(format verdict\.export\.v1\); its range and replica are its own claims/);
      expect(result.stdout, attack.name).toMatch(/warning +the export's header .* is unsigned .*compare the range and replica above with the ones exported/);
      expect(result.stdout, attack.name).toMatch(/\nOK \(header not authenticated\): the export's rows and checkpoints are intact; its unsigned header was accepted with --allow-unsigned-header\n$/);
      expect(result.stdout, attack.name).not.toContain('OK: the export is intact');
    }
  });

  it('a break in the rows is named before the unsigned header, which the report still warns of', async () => {
    const edited = body().map((line) => (line.type === 'decision' && line.seq === 12 ? { ...line, effect: 'DENY' } : line));
    const result = await verify(write('changed.jsonl', [asV1(), ...edited, end()]));
    expect(result.code).toBe(1);
    expect(failure(result.stdout)).toMatch(/^FAILED: changed at seq 12: /);
    expect(result.stdout).toMatch(/warning +the export's header \(seq 1\.\.35, replica unnamed\) is unsigned/);
  });

  it('--json gives the break, and the header as unsigned, for a script to tell apart', async () => {
    const refused = JSON.parse((await verify(write('json.jsonl', [asV1(), ...body(), end()]), '--json')).stdout) as Line;
    expect(refused).toMatchObject({ ok: false, header: 'unsigned', rows: 35, break: { kind: 'unsigned-header', seq: 0 } });
    const accepted = JSON.parse((await verify(write('json.jsonl', [asV1(), ...body(), end()]), '--json', '--allow-unsigned-header')).stdout) as Line;
    expect(accepted).toMatchObject({ ok: true, header: 'unsigned', break: null });
    const signed = JSON.parse((await verify(write('json.jsonl', lines), '--json', '--allow-unsigned-header')).stdout) as Line;
    expect(signed).toMatchObject({ ok: true, header: 'signed', break: null });
  });

  it('--allow-unsigned-header leaves a signed header checked, and is refused for a log', async () => {
    const result = await verify(write('signed-relabelled.jsonl', [{ ...header(), fromSeq: 11 }, ...range(11, 35), { ...end(), rows: 25 }]), '--allow-unsigned-header');
    expect(failure(result.stdout)).toMatch(/^FAILED: bad-signature at seq 11: the export's header \(seq 11\.\.35, replica unnamed\) has an invalid signature/);
    const forLog = await audit('verify', '--db', log.db, '--allow-unsigned-header');
    expect(forLog.code).toBe(2);
    expect(forLog.stderr).toContain('--allow-unsigned-header is for an export (--export FILE)');
  });
});
