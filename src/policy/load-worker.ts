import type { Worker } from 'node:worker_threads';
import { messageOf, VerdictError } from '../errors.js';
import { startThread } from '../threads.js';
import { decodeCheckedFile, type EncodedFile } from './checked-codec.js';
import type { CheckedFile } from './stages/schema.js';

export type LoadRequest =
  | { readonly id: number; readonly kind: 'check'; readonly file: string; readonly bytes: Uint8Array }
  | { readonly id: number; readonly kind: 'git'; readonly dir: string };

export type LoadResponse =
  | { readonly id: number; readonly encoded: EncodedFile }
  | { readonly id: number; readonly commit: string | null }
  | { readonly id: number; readonly error: string };

type Answer = { readonly encoded: EncodedFile } | { readonly commit: string | null };

/**
 * The slow parts of a load, in a thread of their own: the schema stage (YAML
 * parsing and schema checks, the costliest part of a load), one file per message,
 * and asking git for the version (starting a process copies the page tables of the
 * thread's process while that thread waits: a large server's event loop would
 * wait for each git command). The thread is started on first use and again
 * after it fails; tests run it too (see threads.ts).
 */
export class LoadWorker {
  private worker: Worker | null = null;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (answer: Answer) => void; reject: (error: Error) => void }>();
  private closed = false;

  async check(file: string, bytes: Uint8Array): Promise<CheckedFile> {
    const answer = await this.ask({ kind: 'check', file, bytes });
    if (!('encoded' in answer)) throw new VerdictError('INTERNAL', 'the policy load thread answered a check with something else');
    return decodeCheckedFile(answer.encoded);
  }

  /** The commit when `dir` is a clean git work tree, else null (see version.ts). */
  async gitCommit(dir: string): Promise<string | null> {
    const answer = await this.ask({ kind: 'git', dir });
    if (!('commit' in answer)) throw new VerdictError('INTERNAL', 'the policy load thread answered a git lookup with something else');
    return answer.commit;
  }

  private async ask(request: { kind: 'check'; file: string; bytes: Uint8Array } | { kind: 'git'; dir: string }): Promise<Answer> {
    if (this.closed) throw new VerdictError('INTERNAL', 'the policy load thread is closed');
    const worker = this.thread();
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      // Held open while it has work, so a load is not abandoned; idle, it keeps no process alive.
      worker.ref();
      worker.postMessage({ id, ...request } satisfies LoadRequest);
    });
  }

  private thread(): Worker {
    if (this.worker) return this.worker;
    const worker = startThread(import.meta.url, './load-worker-thread');
    const fail = (reason: string): void => {
      if (this.worker === worker) this.worker = null;
      for (const [id, { reject }] of this.pending) {
        reject(new VerdictError('INTERNAL', `the policy load thread ${reason}; try the reload again`));
        this.pending.delete(id);
      }
    };
    worker.on('message', (response: LoadResponse) => {
      const waiting = this.pending.get(response.id);
      if (!waiting) return;
      this.pending.delete(response.id);
      if (this.pending.size === 0) worker.unref();
      if ('error' in response) waiting.reject(new VerdictError('INTERNAL', `loading policies failed: ${response.error}`));
      else waiting.resolve(response);
    });
    worker.on('error', (error) => fail(`failed: ${messageOf(error)}`));
    worker.on('exit', (code) => fail(`exited with code ${code}`));
    // After the listeners, since adding a message listener holds the process open again.
    worker.unref();
    this.worker = worker;
    return worker;
  }

  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    this.worker = null;
    await worker?.terminate();
  }
}
