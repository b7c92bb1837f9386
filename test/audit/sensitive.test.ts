import { createHmac } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runDecisions } from '../../src/cli/decisions.js';
import { SensitiveAttributes, parseAttributePath } from '../../src/decisions/sensitive.js';
import { VerdictError } from '../../src/errors.js';
import { audit, makeLog, record, tempDir } from './helpers.js';

const KEY = Buffer.alloc(32, 0x42);

async function decisions(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runDecisions(argv, { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) });
  return { code, stdout, stderr };
}

describe('SensitiveAttributes', () => {
  it('replaces configured attributes by their keyed HMAC and leaves the caller\'s record alone', () => {
    const sensitive = new SensitiveAttributes(['principal.attributes.email', 'context.attributes.ip', 'resource.attributes.owner.contact', 'context.attributes.absent'], KEY);
    const original = record(1, {
      request: {
        principal: { roles: ['r'], attributes: { email: 'alice@example.com', org: 'acme' } },
        resource: { attributes: { owner: { contact: 42, team: 'ml' } } },
        context: { attributes: { ip: '10.1.2.3' } },
      },
    });
    const snapshot = JSON.stringify(original);
    const stored = sensitive.apply(original);
    expect(JSON.stringify(original)).toBe(snapshot);
    const hmac = (bytes: string): string => `hmac-sha256:${createHmac('sha256', KEY).update(bytes).digest('hex')}`;
    expect(stored.request).toEqual({
      principal: { roles: ['r'], attributes: { email: hmac('alice@example.com'), org: 'acme' } },
      resource: { attributes: { owner: { contact: hmac('42'), team: 'ml' } } },
      context: { attributes: { ip: hmac('10.1.2.3') } },
    });
    expect(JSON.stringify(stored)).not.toContain('alice@example.com');
    // Nothing configured is present: the very same record comes back.
    const plain = record(2, { request: { principal: { roles: [], attributes: {} }, resource: { attributes: {} }, context: { attributes: {} } } });
    expect(sensitive.apply(plain)).toBe(plain);
  });

  it('names a bad path and says which paths are allowed', () => {
    for (const bad of ['principal.id', 'principal.attributes', 'action', 'request.attributes.x', 'context.attributes..x', 'context.attributes."q"']) {
      expect(() => parseAttributePath(bad), bad).toThrow(VerdictError);
    }
    expect(() => parseAttributePath('principal.id')).toThrow(/only attributes can be hashed/);
    expect(() => new SensitiveAttributes(['principal.attributes.email'], Buffer.alloc(8))).toThrow(/needs at least 32/);
  });
});

describe('a log with sensitive attributes', () => {
  it('stores the HMAC, never the value, and verdict decisions --attr still finds it', async () => {
    const t = await makeLog(12, { everyRows: 100, sensitive: ['principal.attributes.email', 'context.attributes.ip'] });
    expect(fs.statSync(path.join(t.dir, 'audit-hmac.key')).mode & 0o777).toBe(0o600);
    const bytes = fs.readFileSync(t.db).toString('latin1') + (fs.existsSync(`${t.db}-wal`) ? fs.readFileSync(`${t.db}-wal`).toString('latin1') : '');
    expect(bytes).not.toContain('user5@example.com');
    expect(bytes).toContain('hmac-sha256:');

    const ids = async (...argv: string[]): Promise<string[]> => {
      const run = await decisions('--db', t.db, '--json', ...argv);
      expect(run.stderr).toBe('');
      return run.stdout.trimEnd().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { requestId: string }).requestId);
    };
    expect(await ids('--attr', 'principal.attributes.email=user5@example.com')).toEqual(['req-5']);
    expect(await ids('--attr', 'context.attributes.ip=10.0.0.3')).toEqual(['req-3']);
    expect(await ids('--attr', 'principal.attributes.email=nobody@example.com')).toEqual([]);
    // Attributes that are not sensitive are matched raw; several --attr combine with AND.
    expect(await ids('--attr', 'principal.attributes.org=acme', '--attr', 'principal.attributes.email=user7@example.com')).toEqual(['req-7']);
    // Without the key, a hashed attribute cannot be found.
    const elsewhere = path.join(tempDir(), 'wrong.key');
    fs.writeFileSync(elsewhere, 'ab'.repeat(32));
    expect(await ids('--attr', 'principal.attributes.email=user5@example.com', '--hmac-key', elsewhere)).toEqual([]);
    // The log still verifies: hashing happens before the row is chained.
    expect((await audit('verify', '--db', t.db, '--pubkey', t.pubkey)).code).toBe(0);
  });

  it('--attr usage errors are one line, exit 2', async () => {
    const t = await makeLog(1);
    for (const argv of [['--attr', 'email'], ['--attr', 'principal.id=x'], ['--hmac-key', 'x']]) {
      const run = await decisions('--db', t.db, ...argv);
      expect(run.code, argv.join(' ')).toBe(2);
      expect(run.stderr.trimEnd().split('\n'), argv.join(' ')).toHaveLength(1);
    }
  });

  it('an --hmac-key file that cannot be read is an input error, exit 4, naming the file', async () => {
    const t = await makeLog(1);
    const missing = path.join(tempDir(), 'no-such.key');
    const run = await decisions('--db', t.db, '--attr', 'principal.attributes.email=a@example.com', '--hmac-key', missing);
    expect(run.code).toBe(4);
    expect(run.stderr).toContain(missing);
  });
});
