// `verdict serve` started programmatically for bench/audit.mjs:
//   node bench/lib/audit-server.mjs chained|baseline DB GRPC_PORT HTTP_PORT
// chained: the product as shipped (writer thread, hash chain, signed checkpoints).
// baseline: the same server recording through the benchmark's unchained sink (baseline-sink.mjs).
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from '../../dist/server/app.js';
import { resolveConfig } from '../../dist/server/config.js';
import { createLogger } from '../../dist/server/logger.js';
import { openBaselineSink } from './baseline-sink.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const [sink, db, grpcPort, httpPort] = process.argv.slice(2);
const config = resolveConfig([{ policies: path.join(ROOT, 'policies'), db, grpc: `127.0.0.1:${grpcPort}`, http: `127.0.0.1:${httpPort}`, logLevel: 'warn', watch: false }]);
const sqlite = createRequire(import.meta.url).resolve('better-sqlite3');
const server = await startServer(config, createLogger(config.logLevel), sink === 'baseline' ? { openLog: () => openBaselineSink(db, sqlite) } : {});
process.once('SIGTERM', () => {
  server.close().then(
    () => process.exit(0),
    () => process.exit(5),
  );
});
