import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { messageOf, VerdictError } from '../errors.js';
import { decodeCheckedFile, encodeCheckedFile, type EncodedFile } from './checked-codec.js';
import { decodeText } from './stages/read.js';
import { checkFile, type CheckedFile } from './stages/schema.js';

export interface CheckRequest {
  readonly id: number;
  readonly file: string;
  readonly bytes: Uint8Array;
}

export type CheckResponse = { readonly id: number; readonly encoded: EncodedFile } | { readonly id: number; readonly error: string };

// Compiled next to this file; absent when running from the TypeScript sources (tests), see below.
const ENTRY = fileURLToPath(new URL('./check-thread.js', import.meta.url));

/**
 * Runs the schema stage (YAML parsing and schema checks, the costliest part of a
 * load) in a thread of its own, one file per message. Where the compiled thread
 * entry is not available (running from the TypeScript sources), files are
 * checked in this thread, through the same encoding, so the results are the same.
 * The thread is started on first use and again after it fails.
 */
export class FileChecker {
  private worker: Worker | null = null;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (file: CheckedFile) => void; reject: (error: Error) => void }>();
  private closed = false;

  check(file: string, bytes: Uint8Array): Promise<CheckedFile> {
    if (this.closed) return Promise.reject(new VerdictError('INTERNAL', 'the policy file checker is closed'));
    if (!existsSync(ENTRY)) {
      try {
        return Promise.resolve(decodeCheckedFile(encodeCheckedFile(checkFile(file, decodeText(bytes))).encoded));
      } catch (error) {
        return Promise.reject(error);
      }
    }
    const worker = this.thread();
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      // Held open while it has work, so a check being answered is not abandoned; idle, it keeps no process alive.
      worker.ref();
      worker.postMessage({ id, file, bytes } satisfies CheckRequest);
    });
  }

  private thread(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(ENTRY);
    const fail = (reason: string): void => {
      if (this.worker === worker) this.worker = null;
      for (const [id, { reject }] of this.pending) {
        reject(new VerdictError('INTERNAL', `the policy checking thread ${reason}; try the reload again`));
        this.pending.delete(id);
      }
    };
    worker.on('message', (response: CheckResponse) => {
      const waiting = this.pending.get(response.id);
      if (!waiting) return;
      this.pending.delete(response.id);
      if (this.pending.size === 0) worker.unref();
      if ('error' in response) waiting.reject(new VerdictError('INTERNAL', `checking a policy file failed: ${response.error}`));
      else waiting.resolve(decodeCheckedFile(response.encoded));
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
