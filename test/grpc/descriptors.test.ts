import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadFileDescriptorSetFromBuffer } from '@grpc/proto-loader';
import { DESCRIPTOR_SET_URL, descriptorSet, packageDefinition } from '../../src/server/grpc/descriptors.js';

const SCRIPT = fileURLToPath(new URL('../../scripts/gen-descriptors.sh', import.meta.url));
const hasProtoc = spawnSync('protoc', ['--version']).status === 0;

describe('the committed descriptor set', () => {
  // CI installs protoc (Debian: protobuf-compiler), so there this never skips.
  it.skipIf(!hasProtoc)('is exactly what scripts/gen-descriptors.sh builds from proto/', () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-descriptors-'));
    try {
      const fresh = join(dir, 'verdict.binpb');
      execFileSync(SCRIPT, [fresh], { stdio: 'pipe' });
      const same = Buffer.compare(readFileSync(fresh), readFileSync(DESCRIPTOR_SET_URL)) === 0;
      const version = execFileSync('protoc', ['--version']).toString().trim();
      expect(same, `proto/verdict.binpb is stale: run scripts/gen-descriptors.sh and commit it (${version})`).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('loads with camelCase fields, real map fields and every service', () => {
    expect(descriptorSet.length).toBeGreaterThan(0);
    for (const name of [
      'verdict.v1.Authorization',
      'verdict.v1.Admin',
      'grpc.health.v1.Health',
      'grpc.reflection.v1.ServerReflection',
      'grpc.reflection.v1alpha.ServerReflection',
    ]) {
      expect(packageDefinition[name], name).toBeDefined();
    }
    const check = packageDefinition['verdict.v1.Authorization']!['Check' as never] as {
      requestSerialize(value: object): Buffer;
      requestDeserialize(bytes: Buffer): unknown;
    };
    const bytes = check.requestSerialize({ principal: { id: 'p', attributes: { fields: { a: { boolValue: true } } } }, requestId: 'r' });
    expect(check.requestDeserialize(bytes)).toMatchObject({
      principal: { id: 'p', roles: [], attributes: { fields: { a: { boolValue: true, kind: 'boolValue' } } } },
      requestId: 'r',
      resource: null,
    });
    expect(Object.keys(packageDefinition).filter((name) => name.endsWith('Entry'))).toEqual([]);
  });

  // Why descriptors.ts does not simply call loadFileDescriptorSetFromBuffer: if
  // this starts failing, proto-loader has fixed both and the workaround can go.
  it('would lose camelCase and map fields through loadFileDescriptorSetFromBuffer', () => {
    const plain = loadFileDescriptorSetFromBuffer(descriptorSet, { longs: String, enums: String, defaults: true, oneofs: true });
    const check = plain['verdict.v1.Authorization']!['Check' as never] as { requestDeserialize(bytes: Buffer): unknown };
    const ours = packageDefinition['verdict.v1.Authorization']!['Check' as never] as { requestSerialize(value: object): Buffer };
    const bytes = ours.requestSerialize({ principal: { id: 'p', attributes: { fields: { a: { boolValue: true } } } }, requestId: 'r' });
    expect(check.requestDeserialize(bytes)).toMatchObject({
      principal: { attributes: { fields: [{ key: 'a', value: { bool_value: true } }] } },
      request_id: 'r',
    });
  });
});
