import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { beforeAll, describe, expect, it } from 'vitest';
import { ROOT, checkRequest, ensureBuilt, startVerdict, verdictClient } from '../helpers/verdict-process.js';
import { audit, failure, tamperSql, tempDir } from './helpers.js';

/**
 * The replica id signed into checkpoints (format v3) and the signed export
 * header, against logs and exports written by real servers: two replicas that
 * share a signing key (where only the signed id tells their checkpoints
 * apart), then their files edited with the sqlite3 shell and by hand.
 */

const POLICIES = path.join(ROOT, 'policies');
const CHECK = checkRequest({ principal: { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme' } }, action: 'predict', resource: { type: 'model', id: 'fraud-v3', attributes: { org: 'acme' } } });
const ROWS = 12;

interface Replica {
  readonly dir: string;
  readonly db: string;
}

let alpha: Replica;
let beta: Replica;
let pubkey: string;

/** A replica's server on its own log, with the shared key, making ROWS decisions (a checkpoint every 4), stopped cleanly. */
async function runReplica(id: string, key: { signing: string; public: string } | null): Promise<Replica> {
  const dir = tempDir();
  const db = path.join(dir, 'decisions.db');
  const keyArgs = key === null ? [] : ['--signing-key', key.signing, '--public-key', key.public];
  const server = await startVerdict({ policies: POLICIES, db, args: ['--replica-id', id, '--checkpoint-every-rows', '4', ...keyArgs] });
  const client = verdictClient(server.grpcPort, { ownConnection: true });
  try {
    for (let i = 0; i < ROWS; i++) expect((await client.call<{ effect: string }>('Authorization', 'Check', CHECK)).effect).toBe('EFFECT_ALLOW');
  } finally {
    client.close();
    expect(await server.stop()).toBe(0);
  }
  return { dir, db };
}

/** A copy of a replica's log (with its -wal folded in by the clean stop) to tamper with. */
function copyOf(replica: Replica): string {
  const db = path.join(tempDir(), 'decisions.db');
  fs.copyFileSync(replica.db, db);
  return db;
}

async function verifyDb(db: string, ...more: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return audit('verify', '--db', db, '--pubkey', pubkey, ...more);
}

beforeAll(async () => {
  ensureBuilt();
  alpha = await runReplica('alpha', null);
  pubkey = path.join(alpha.dir, 'audit-signing-key.pub.pem');
  beta = await runReplica('beta', { signing: path.join(alpha.dir, 'audit-signing-key.pem'), public: pubkey });
}, 180_000);

describe('checkpoints name the replica whose log signed them (format v3)', () => {
  it('a server signs its replica id into every checkpoint, and the log verifies', async () => {
    const reader = new Database(alpha.db, { readonly: true });
    const rows = reader.prepare('SELECT seq, previous_seq, replica_id FROM checkpoints ORDER BY seq').raw(true).all();
    reader.close();
    expect(rows).toEqual([[4, 0, 'alpha'], [8, 4, 'alpha'], [12, 8, 'alpha']]);
    const result = await verifyDb(alpha.db);
    expect(result.stdout).toContain('OK: the decision log is intact');
    expect(result.code).toBe(0);
  });

  it("a log relabelled as another replica's (log_meta edited) is a replica-mismatch at its first checkpoint", async () => {
    const db = copyOf(alpha);
    tamperSql(db, "UPDATE log_meta SET value = 'beta' WHERE key = 'replica_id';");
    const result = await verifyDb(db);
    expect(result.code).toBe(1);
    expect(failure(result.stdout)).toMatch(
      /^FAILED: replica-mismatch at seq 4: the checkpoint at seq 4 \(signed [^)]+\) was signed in the log of replica alpha, but this log records replica beta: either the checkpoint \(with the rows it signs\) was copied from replica alpha's log, or the recorded replica id was changed; compare/,
    );
  });

  it('a log whose recorded id was deleted is a replica-mismatch too', async () => {
    const db = copyOf(alpha);
    tamperSql(db, "DELETE FROM log_meta WHERE key = 'replica_id';");
    const result = await verifyDb(db);
    expect(failure(result.stdout)).toMatch(/^FAILED: replica-mismatch at seq 4: .* was signed in the log of replica alpha, but this log records no replica id/);
  });

  it("another replica's checkpoint copied into a log (same signing key) is named as such, not as rewritten rows", async () => {
    const db = copyOf(beta);
    const copied = (() => {
      const reader = new Database(alpha.db, { readonly: true });
      try {
        return reader.prepare("SELECT seq, hash, time_ms, key_id, signature, previous_seq, replica_id FROM checkpoints WHERE seq = 8").get() as Record<string, unknown>;
      } finally {
        reader.close();
      }
    })();
    tamperSql(
      db,
      `DELETE FROM checkpoints WHERE seq = 8; INSERT INTO checkpoints (kind, seq, hash, time_ms, key_id, signature, previous_seq, replica_id) VALUES ('checkpoint', 8, X'${(copied.hash as Buffer).toString('hex')}', ${String(copied.time_ms)}, '${String(copied.key_id)}', X'${(copied.signature as Buffer).toString('hex')}', 4, 'alpha');`,
    );
    const result = await verifyDb(db);
    expect(failure(result.stdout)).toMatch(/^FAILED: replica-mismatch at seq 8: the checkpoint at seq 8 .* signed in the log of replica alpha, but this log records replica beta/);
  });

  it('an edited signed replica id, or one removed, fails the signature', async () => {
    for (const edit of ["UPDATE checkpoints SET replica_id = 'beta' WHERE seq = 8;", 'UPDATE checkpoints SET replica_id = NULL WHERE seq = 8;']) {
      const db = copyOf(alpha);
      tamperSql(db, edit);
      const result = await verifyDb(db);
      expect(failure(result.stdout), edit).toMatch(/^FAILED: bad-signature at seq 8: the checkpoint at seq 8 .* has an invalid signature: its seq, hash, time, kind or replica were altered/);
    }
  });

  it('prune signs its anchor with the replica id, and the rest verifies', async () => {
    const dir = tempDir();
    for (const name of fs.readdirSync(alpha.dir)) if (/^(decisions\.db|audit-)/.test(name)) fs.copyFileSync(path.join(alpha.dir, name), path.join(dir, name));
    const db = path.join(dir, 'decisions.db');
    const pruned = await audit('prune', '--db', db, '--before', new Date(Date.now() + 60_000).toISOString());
    expect(pruned.code, pruned.stderr).toBe(0);
    const reader = new Database(db, { readonly: true });
    expect(reader.prepare("SELECT kind, seq, replica_id FROM checkpoints WHERE kind = 'anchor'").raw(true).all()).toEqual([['anchor', ROWS, 'alpha']]);
    reader.close();
    expect((await verifyDb(db)).code).toBe(0);
    tamperSql(db, "UPDATE log_meta SET value = 'beta' WHERE key = 'replica_id';");
    expect(failure((await verifyDb(db)).stdout)).toMatch(/^FAILED: replica-mismatch at seq 12: the prune anchor at seq 12 .* replica alpha, but this log records replica beta/);
  });
});

describe('an exported checkpoint carries its replica id', () => {
  let file: string;
  beforeAll(async () => {
    file = path.join(tempDir(), 'alpha-checkpoint.json');
    const run = await audit('checkpoint', '--db', alpha.db, '--export', file);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('for replica alpha');
  });

  it('as format verdict.checkpoint-export.v3, and verifies the log it came from', async () => {
    const data = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    expect(data).toMatchObject({ format: 'verdict.checkpoint-export.v3', seq: ROWS, previousSeq: 8, replicaId: 'alpha' });
    expect(data.message).toBe(`["verdict.checkpoint.v3","checkpoint",${ROWS},"${String(data.hash)}",${String(data.timeMs)},8,"alpha"]`);
    const result = await verifyDb(alpha.db, '--from-checkpoint', file);
    expect(result.stdout).toMatch(/exported +checkpoint at seq 12 matched/);
    expect(result.code).toBe(0);
  });

  it("held against another replica's log (same key), is a replica-mismatch", async () => {
    const result = await verifyDb(beta.db, '--from-checkpoint', file);
    expect(result.code).toBe(1);
    expect(failure(result.stdout)).toMatch(/^FAILED: replica-mismatch at seq 12: the exported checkpoint \(seq 12, signed [^)]+\) was signed in the log of replica alpha, but this log records replica beta/);
  });

  it('relabelled, or passed off as a v2 file, fails its signature; a v3 file without the id is refused', async () => {
    const data = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    const dir = tempDir();
    const { replicaId: _dropped, ...withoutId } = data;
    for (const [name, altered] of [
      ['relabelled', { ...data, replicaId: 'beta' }],
      ['as-v2', { ...withoutId, format: 'verdict.checkpoint-export.v2' }],
    ] as const) {
      const edited = path.join(dir, `${name}.json`);
      fs.writeFileSync(edited, JSON.stringify(altered));
      const result = await verifyDb(beta.db, '--from-checkpoint', edited);
      expect(failure(result.stdout), name).toMatch(/^FAILED: bad-signature at seq 12: the exported checkpoint .* has an invalid signature/);
    }
    const missing = path.join(dir, 'missing.json');
    fs.writeFileSync(missing, JSON.stringify(withoutId));
    const refused = await verifyDb(alpha.db, '--from-checkpoint', missing);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toContain('replicaId must be given in a verdict.checkpoint-export.v3 file');
  });
});

describe('the export header is signed (verdict.export.v2)', () => {
  let lines: string[];
  let header: Record<string, unknown>;
  const write = (name: string, content: string[]): string => {
    const out = path.join(tempDir(), name);
    fs.writeFileSync(out, `${content.join('\n')}\n`);
    return out;
  };
  const verifyExport = (file: string, ...more: string[]): Promise<{ code: number; stdout: string; stderr: string }> => audit('verify', '--export', file, '--pubkey', pubkey, ...more);
  /** The export cut back to its checkpoint at seq 8: the rows before it and the checkpoints with them removed. */
  const cutAt8 = (): string[] => lines.slice(1).filter((line) => {
    const o = JSON.parse(line) as { type: string; seq?: number };
    return o.type === 'end' || (o.seq ?? 0) >= (o.type === 'decision' ? 9 : 8);
  });

  beforeAll(async () => {
    const out = path.join(tempDir(), 'alpha.jsonl');
    const run = await audit('export', '--db', alpha.db, '--out', out);
    expect(run.code, run.stderr).toBe(0);
    lines = fs.readFileSync(out, 'utf8').trimEnd().split('\n');
    header = JSON.parse(lines[0]!) as Record<string, unknown>;
  });

  it('binds the range, the replica and the chain hashes around the range, and verifies without a warning about it', async () => {
    expect(header).toMatchObject({ type: 'header', format: 'verdict.export.v2', fromSeq: 1, toSeq: ROWS, replicaId: 'alpha', startHash: '0'.repeat(64) });
    expect(header.endHash).toBe((JSON.parse(lines[lines.length - 2]!) as { hash: string }).hash);
    expect(typeof header.signature).toBe('string');
    const result = await verifyExport(write('intact.jsonl', lines));
    expect(result.stdout).toContain('OK: the export is intact');
    expect(result.stdout).not.toContain('unsigned');
    expect(result.code).toBe(0);
  });

  it('cut back to a checkpoint with the header rewritten to the shorter range: bad-signature', async () => {
    const rewritten = { ...header, fromSeq: 9 };
    const result = await verifyExport(write('cut.jsonl', [JSON.stringify(rewritten), ...cutAt8()]));
    expect(result.code).toBe(1);
    expect(failure(result.stdout)).toMatch(/^FAILED: bad-signature at seq 9: the export's header \(seq 9\.\.12, replica alpha\) has an invalid signature: its range, replica, hashes or time were altered/);
  });

  it('the same with the header made an unsigned one of an earlier release: bad-signature, since its checkpoints name their replica, even with --allow-unsigned-header', async () => {
    const { signature: _s, startHash: _a, endHash: _b, ...older } = header;
    const file = write('downgraded.jsonl', [JSON.stringify({ ...older, format: 'verdict.export.v1', fromSeq: 9 }), ...cutAt8()]);
    // Accepting unsigned headers does not accept this one: only a release that signs headers wrote its checkpoints.
    for (const more of [[], ['--allow-unsigned-header']]) {
      const result = await verifyExport(file, ...more);
      expect(result.code).toBe(1);
      expect(failure(result.stdout)).toMatch(/^FAILED: bad-signature at seq 9: the export's header \(seq 9\.\.12, replica alpha\) is unsigned \(format verdict.export.v1\), but the export carries checkpoints that name their replica/);
    }
  });

  it('a header relabelled to another replica fails its signature; without the id, or signature, likewise', async () => {
    const { replicaId: _r, ...noId } = header;
    const { signature: _s, ...noSignature } = header;
    for (const [name, altered] of [['beta', { ...header, replicaId: 'beta' }], ['no-id', noId]] as const) {
      const result = await verifyExport(write(`${name}.jsonl`, [JSON.stringify(altered), ...lines.slice(1)]));
      expect(failure(result.stdout), name).toMatch(/^FAILED: bad-signature at seq 1: the export's header .* has an invalid signature/);
    }
    const unsigned = await verifyExport(write('no-signature.jsonl', [JSON.stringify(noSignature), ...lines.slice(1)]));
    expect(unsigned.code).toBe(4);
    expect(unsigned.stderr).toContain('header signature must be base64 in a verdict.export.v2 header');
  });
});

describe('an export written by the release before signed headers (test/fixtures/legacy-export-v1)', () => {
  const FIXTURE = path.join(ROOT, 'test', 'fixtures', 'legacy-export-v1', 'export.jsonl');
  const KEY = path.join(ROOT, 'test', 'fixtures', 'legacy-log-v1', 'audit-signing-key.pub.pem');

  it('is refused as unsigned-header by default: its rows and checkpoints verify, but nothing tells it from a downgraded export', async () => {
    const result = await audit('verify', '--export', FIXTURE, '--pubkey', KEY);
    expect(result.stdout).toContain('38 rows, seq 8..45 from the prune anchor at seq 7: intact');
    expect(result.stdout).toMatch(/header +not authenticated: unsigned \(format verdict\.export\.v1\)/);
    expect(failure(result.stdout)).toMatch(
      /^FAILED: unsigned-header: the export's header \(seq 8\.\.45, replica unnamed\) is unsigned \(format verdict\.export\.v1\): its range, replica and time are unproven.* run again with --allow-unsigned-header/,
    );
    expect(result.code).toBe(1);
  });

  it('verifies with --allow-unsigned-header, the report saying its header was not authenticated', async () => {
    const result = await audit('verify', '--export', FIXTURE, '--pubkey', KEY, '--allow-unsigned-header');
    expect(result.stdout).toContain('38 rows, seq 8..45 from the prune anchor at seq 7: intact');
    expect(result.stdout).toContain('5 of 5 verified');
    expect(result.stdout).toMatch(/warning +the export's header \(seq 8\.\.45, replica unnamed\) is unsigned \(format verdict\.export\.v1\)/);
    expect(result.stdout).toContain("OK (header not authenticated): the export's rows and checkpoints are intact");
    expect(result.code).toBe(0);
  });

  it('with a row changed, fails as changed with or without --allow-unsigned-header', async () => {
    const edited = fs.readFileSync(FIXTURE, 'utf8').replace('"resourceId":"globex-secret"', '"resourceId":"globex-public"');
    const out = path.join(tempDir(), 'changed-legacy.jsonl');
    fs.writeFileSync(out, edited);
    for (const more of [[], ['--allow-unsigned-header']]) {
      const result = await audit('verify', '--export', out, '--pubkey', KEY, ...more);
      expect(failure(result.stdout), more.join(' ')).toMatch(/^FAILED: changed at seq 8: /);
      expect(result.code).toBe(1);
    }
  });

  it('with --allow-unsigned-header, cannot show a cut back to a checkpoint with its header rewritten (its checkpoints name no replica): it reads as a shorter range', async () => {
    const lines = fs.readFileSync(FIXTURE, 'utf8').trimEnd().split('\n');
    const header = JSON.parse(lines[0]!) as Record<string, unknown>;
    const kept = lines.slice(1, -1).filter((line) => {
      const o = JSON.parse(line) as { type: string; seq: number };
      return o.seq >= (o.type === 'decision' ? 21 : 20);
    });
    const end = { ...(JSON.parse(lines[lines.length - 1]!) as Record<string, unknown>), rows: 25 };
    const out = path.join(tempDir(), 'cut-legacy.jsonl');
    fs.writeFileSync(out, `${[JSON.stringify({ ...header, fromSeq: 21 }), ...kept, JSON.stringify(end)].join('\n')}\n`);
    expect(failure((await audit('verify', '--export', out, '--pubkey', KEY)).stdout)).toMatch(/^FAILED: unsigned-header: the export's header \(seq 21\.\.45, replica unnamed\)/);
    const result = await audit('verify', '--export', out, '--pubkey', KEY, '--allow-unsigned-header');
    expect(result.stdout).toContain('25 rows, seq 21..45 from the checkpoint at seq 20: intact');
    expect(result.stdout).toContain('OK (header not authenticated)');
    expect(result.code).toBe(0);
  });
});
