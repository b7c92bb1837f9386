import { parseArgs, type ParseArgsConfig } from 'node:util';
import { VerdictError } from '../errors.js';

/** Where a command writes. Tests pass their own; the binary passes the process streams. */
export interface CommandIO {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  /** Reads all of standard input; absent when there is none to read. */
  readonly readStdin?: () => Promise<string>;
}

export type Command = (argv: string[], io: CommandIO) => Promise<number>;

/** Exit codes shared by every command, so CI scripts can tell failures apart. */
export const EXIT = {
  OK: 0,
  /** What the command checks failed: `validate` found errors, `test` had a failing case. */
  FAILED: 1,
  /** Bad flag, missing argument, unknown command. */
  USAGE: 2,
  /** The policy directory is invalid or missing, for a command that needs valid policies. */
  POLICY_INVALID: 3,
  /** An input file, request or database could not be read or is malformed. */
  INPUT: 4,
  /** The server could not start or stopped on an error. */
  SERVER: 5,
} as const;

/** node:util parseArgs with errors turned into a one-line usage error. */
export function parseFlags<T extends NonNullable<ParseArgsConfig['options']>>(
  argv: string[],
  options: T,
  allowPositionals: boolean,
): { values: { [K in keyof T]?: T[K]['type'] extends 'boolean' ? boolean : string }; positionals: string[] } {
  try {
    const parsed = parseArgs({ args: argv, options, allowPositionals, strict: true });
    return parsed as unknown as { values: { [K in keyof T]?: T[K]['type'] extends 'boolean' ? boolean : string }; positionals: string[] };
  } catch (error) {
    // node's message goes on about positionals after '--'; its first sentence is the point.
    const first = ((error as Error).message.split('\n')[0] ?? 'invalid arguments').split('. ')[0] ?? 'invalid arguments';
    throw new VerdictError('USAGE', `${first.replace(/\.$/, '')}; see --help`);
  }
}
