import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Structured JSON logs on standard output. pino writes asynchronously through its
 * own buffer, and nothing on the per-check path logs at info level.
 */
export function createLogger(level: string, destination: NodeJS.WritableStream = process.stdout): Logger {
  return pino({ level, base: { service: 'verdict' }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
}
