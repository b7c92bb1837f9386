// A prober in a thread of its own: one check every `intervalMs` over one HTTP/2
// connection, on a fixed schedule (a check is sent when it is due whether or not the
// last one was answered, so a stall shows in every check it holds up), each timed
// from send to end of response.
//
// It runs in a worker thread so that what the benchmark itself does meanwhile (writing
// policy files, reading the server's output, its own garbage collection of the policy
// texts it holds) cannot delay a send or a response and pass for the server's latency.
// Times are absolute (performance.timeOrigin + now), comparable across threads.
import http2 from 'node:http2';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

/**
 * Starts probing `http://host:port` + `path` with `body` (a framed gRPC message).
 * @returns {{ stop(): Promise<{ samples: { sent: number, ms: number }[], failures: number }> }}
 */
export function startProber({ host, port, path, body, intervalMs }) {
  const worker = new Worker(new URL(import.meta.url), { workerData: { host, port, path, body, intervalMs } });
  const done = new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the prober thread exited (${code}) before it reported its samples`)));
  });
  return {
    stop: async () => {
      worker.postMessage('stop');
      const result = await done;
      await worker.terminate();
      return result;
    },
  };
}

const now = () => performance.timeOrigin + performance.now();

function probe({ host, port, path, body, intervalMs }) {
  const frame = Buffer.from(body);
  const session = http2.connect(`http://${host}:${port}`);
  session.on('error', () => undefined);
  const samples = [];
  let failures = 0;
  const send = () => {
    const sent = now();
    const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
    let status = null;
    stream.on('response', (headers) => (status = headers['grpc-status'] ?? status));
    stream.on('trailers', (trailers) => (status = trailers['grpc-status'] ?? status));
    stream.on('data', () => undefined);
    stream.on('error', () => failures++);
    stream.on('end', () => {
      if (String(status) !== '0') failures++;
      samples.push({ sent, ms: now() - sent });
    });
    stream.end(frame);
  };
  const start = performance.now();
  let sentCount = 0;
  // Scheduled against the clock, not chained: a late tick sends what is due at once.
  const tick = () => {
    const due = Math.floor((performance.now() - start) / intervalMs);
    while (sentCount <= due) {
      send();
      sentCount++;
    }
    timer = setTimeout(tick, intervalMs / 2);
  };
  let timer = setTimeout(tick, 0);
  parentPort.once('message', () => {
    clearTimeout(timer);
    // Checks still in flight get a second to be answered.
    setTimeout(() => {
      session.close();
      parentPort.postMessage({ samples, failures });
    }, 1000);
  });
}

if (!isMainThread && workerData?.intervalMs) probe(workerData);
