import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ApiKeyStore } from '../../src/authn/api-keys.js';
import { ROOT, ensureBuilt, startVerdict, type VerdictProcess } from '../helpers/verdict-process.js';

/** The example policy set, whose routes.yaml protects the model server's endpoints. */
export const EXAMPLE_POLICIES = join(ROOT, 'policies');

/** The principals of policies/tests/*.yaml, as API keys would carry them. */
export const PRINCIPALS = {
  dana: { roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } },
  carl: { roles: ['data_scientist'], attributes: { org: 'acme', employment: 'contractor' } },
  vic: { roles: ['viewer'], attributes: { org: 'acme' } },
  ada: { roles: ['admin'], attributes: { org: 'acme' } },
} as const;
export type PrincipalName = keyof typeof PRINCIPALS;

export interface GatewayVerdict {
  readonly verdict: VerdictProcess;
  readonly dir: string;
  readonly db: string;
  /** An active API key per principal. */
  readonly keys: Readonly<Record<PrincipalName, string>>;
  /** A key of dana's that has been revoked. */
  readonly revokedKey: string;
  stop(): Promise<void>;
}

/**
 * The real `verdict serve` on the example policies, authenticating gateway requests
 * with API keys (authn.apiKeys) made here in a fresh key store.
 */
export async function startGatewayVerdict(): Promise<GatewayVerdict> {
  ensureBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'verdict-gateway-'));
  const keysDb = join(dir, 'keys.db');
  const store = ApiKeyStore.open(keysDb);
  const keys = {} as Record<PrincipalName, string>;
  for (const [name, principal] of Object.entries(PRINCIPALS) as [PrincipalName, (typeof PRINCIPALS)[PrincipalName]][]) {
    keys[name] = store.create({ owner: name, name: `${name}'s test key`, roles: principal.roles, attributes: principal.attributes }).key;
  }
  const revoked = store.create({ owner: 'dana', name: 'leaked', roles: ['data_scientist'], attributes: { org: 'acme' } });
  store.revoke(revoked.info.id);
  store.close();

  const config = join(dir, 'verdict.yaml');
  writeFileSync(config, stringify({ authn: { apiKeys: { db: keysDb } }, logLevel: 'warn' }));
  const db = join(dir, 'decisions.db');
  const verdict = await startVerdict({ policies: EXAMPLE_POLICIES, db, args: ['--config', config, '--no-watch', '--log-level', 'info'] });
  return {
    verdict,
    dir,
    db,
    keys,
    revokedKey: revoked.key,
    stop: async () => {
      await verdict.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
