import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Alert, AlertType } from '../../src/analysis/alert.js';
import { startServer, type RunningServer } from '../../src/server/app.js';
import { readConfigFile, resolveConfig } from '../../src/server/config.js';
import { createLogger } from '../../src/server/logger.js';
import { ROOT } from '../helpers/verdict-process.js';

/** A principal the example policies allow to predict with fraud-v3, over gRPC and forward-auth. */
export const dana = { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme', employment: 'employee' } };
export const fraudModel = { type: 'model', id: 'fraud-v3', attributes: { org: 'acme', env: 'production', owner: 'dana' } };

/** The example set's route for predict, as NGINX forwards it, with the caller named by trusted headers. */
export function forwardAuthHeaders(user: string): Record<string, string> {
  return {
    'x-original-method': 'POST',
    'x-original-uri': '/v1/models/fraud-v3/predict',
    'x-model-org': 'acme',
    'x-model-classification': 'internal',
    'x-user': user,
    'x-roles': 'data_scientist',
    'x-org': 'acme',
    'x-employment': 'employee',
  };
}

export interface TestServer {
  readonly server: RunningServer;
  readonly db: string;
  readonly dir: string;
  stop(): Promise<void>;
}

const dirs: string[] = [];
export function cleanUp(): void {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/**
 * verdict on the example policies, in this process, on loopback ports; `file`
 * is the config file's content (as JSON, which is YAML), read as the server
 * reads it; `db` to reopen an earlier log.
 */
export async function startTestServer(file: Record<string, unknown> = {}, db?: string): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), 'verdict-alerts-'));
  dirs.push(dir);
  const path = db ?? join(dir, 'decisions.db');
  const configFile = join(dir, 'verdict.yaml');
  writeFileSync(configFile, JSON.stringify(file));
  const config = resolveConfig([
    {
      policies: join(ROOT, 'policies'),
      db: path,
      grpc: '127.0.0.1:0',
      http: '127.0.0.1:0',
      watch: false,
      trustedPrincipal: { idHeader: 'x-user', rolesHeader: 'x-roles', attributeHeaders: { org: 'x-org', employment: 'x-employment' } },
      // The gateway that asks AuthZEN questions about its users.
      authzen: { peps: ['trusted-header:model-gateway'] },
    },
    readConfigFile(configFile),
  ]);
  const server = await startServer(config, createLogger('silent'));
  return { server, db: path, dir, stop: () => server.close() };
}

let sequence = 0;
/** An alert as a detector raises it. */
export function alertAbout(principalId: string, type: AlertType = 'probing', kind: Alert['subject']['kind'] = 'principal'): Alert {
  const now = Date.now();
  sequence++;
  return {
    id: `alert-${type}-${principalId}-${sequence}`,
    type,
    subject: { kind, id: principalId },
    windowStart: now - 3_600_000,
    windowEnd: now,
    observed: 80,
    threshold: 50,
    decisionIds: ['0190e7c8-0000-7000-8000-000000000001'],
    raisedAt: now,
    summary: `${principalId}: 80% of 60 decisions denied in an hour (threshold 50%)`,
  };
}
