// The benchmark's baseline decision log: the same rows as verdict's (encoded by
// its row codec, one message per event-loop turn to a writer thread, one
// durable transaction per batch of messages), but no hash chain, no format,
// no checkpoints. It exists only here, so that bench/audit.mjs can measure
// what the chain costs without the product having a way to turn it off.
import { Worker } from 'node:worker_threads';
import { COLUMN_LIST, COLUMNS } from '../../dist/decisions/columns.js';
import { encodeRecord } from '../../dist/decisions/row.js';

const WRITER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.sqlite);
const db = new Database(workerData.path);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = FULL');
db.exec('CREATE TABLE IF NOT EXISTS decisions (seq INTEGER PRIMARY KEY, ' + workerData.columns + ')');
const insert = db.prepare('INSERT INTO decisions (' + workerData.columns + ') VALUES (' + workerData.placeholders + ')');
const width = workerData.width;
// The server opens its own tables (suspensions) in this file once the sink is open: say when it exists.
parentPort.postMessage({ ready: true });
let inbox = [];
const write = db.transaction((messages) => {
  for (const m of messages) for (let i = 0; i < m.values.length; i += width) insert.run(m.values.slice(i, i + width));
});
parentPort.on('message', (m) => {
  if (m.close) { db.close(); parentPort.postMessage({ closed: true }); return; }
  if (inbox.push(m) === 1) setImmediate(() => { const batch = inbox; inbox = []; write(batch); for (const b of batch) parentPort.postMessage({ id: b.id }); });
});
`;

/** A sink with the shape startServer's openLog wants (StartOptions in dist/server/app.js). */
export async function openBaselineSink(path, sqlitePath) {
  const worker = new Worker(WRITER, {
    eval: true,
    workerData: { path, sqlite: sqlitePath, columns: COLUMN_LIST, placeholders: COLUMNS.map(() => '?').join(', '), width: COLUMNS.length },
  });
  await new Promise((resolve, reject) => {
    const onReady = (m) => {
      if (m.ready !== true) return;
      worker.off('message', onReady);
      resolve();
    };
    worker.on('message', onReady);
    worker.once('error', reject);
  });
  const pending = new Map();
  let nextId = 1;
  let values = [];
  let waiters = [];
  worker.on('message', (m) => {
    if (m.id === undefined) return;
    for (const w of pending.get(m.id) ?? []) w();
    pending.delete(m.id);
  });
  const send = () => {
    const id = nextId++;
    pending.set(id, waiters);
    worker.postMessage({ id, values });
    values = [];
    waiters = [];
  };
  const noEvents = () => () => undefined;
  return {
    path,
    healthy: true,
    lastError: null,
    append(record) {
      encodeRecord(values, record);
      if (waiters.length === 0) setImmediate(send);
      return new Promise((resolve) => waiters.push(resolve));
    },
    onHealthChange: noEvents,
    onCommit: noEvents,
    onWriteError: noEvents,
    probe: async () => true,
    auditStatus: async () => ({ sensitiveAttributes: [], checkpoints: null }),
    // Alerts are not decisions: the baseline keeps none (the detectors still run, as in the chained server).
    appendAlerts: async () => undefined,
    async close() {
      await new Promise((resolve) => {
        worker.on('message', (m) => m.closed && resolve());
        worker.postMessage({ close: true });
      });
      await worker.terminate();
    },
  };
}
