import { VerdictError, messageOf } from '../errors.js';
import { EXIT, type Command, type CommandIO } from './io.js';

const COMMANDS: Record<string, { run: () => Promise<Command>; summary: string }> = {
  // Each command is loaded when used: `verdict audit verify` need not load the policy engine and YAML.
  validate: { run: async () => (await import('./validate.js')).runValidate, summary: 'check policy files; every error as file:line:col' },
  check: { run: async () => (await import('./check.js')).runCheck, summary: 'decide one request from the command line' },
  test: { run: async () => (await import('./test.js')).runTest, summary: 'run the policy test files' },
  serve: { run: async () => (await import('./serve.js')).runServe, summary: 'serve decisions over gRPC with a durable decision log' },
  decisions: { run: async () => (await import('./decisions.js')).runDecisions, summary: 'query the decision log' },
  audit: { run: async () => (await import('./audit.js')).runAudit, summary: 'verify, checkpoint, export and prune the tamper-evident decision log' },
  keys: { run: async () => (await import('./keys.js')).runKeys, summary: 'create, list, revoke and rotate API keys' },
  replay: { run: async () => (await import('./replay.js')).runReplay, summary: 'replay recorded decisions against changed policies: what would flip?' },
  'access-review': { run: async () => (await import('./access-review.js')).runAccessReview, summary: 'who can do what on which resource, by which rule or role grant' },
  alerts: { run: async () => (await import('./alerts.js')).runAlerts, summary: 'list the anomaly alerts the server raised' },
  analyze: { run: async () => (await import('./analyze.js')).runAnalyze, summary: 'run the anomaly detectors over a range of the decision log' },
  suspend: { run: async () => (await import('./suspend.js')).runSuspend, summary: 'list, lift and make suspensions of principals on a running server' },
};

function help(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return `Usage: verdict <command> [options]

verdict is a policy decision point: it answers "may principal P do action A on
resource R, in context C?" from the policy files in a directory.

Commands:
${lines.join('\n')}

Run "verdict <command> --help" for a command's options.

Exit codes: 0 ok, 1 check failed (validation errors, failing tests), 2 usage error,
3 invalid policies, 4 unreadable or invalid input, 5 server error.
`;
}

const processIO: CommandIO = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  readStdin: async () => {
    if (process.stdin.isTTY) throw new VerdictError('USAGE', 'no request given: pass --request JSON, --file FILE, or pipe JSON to standard input');
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  },
};

const EXIT_FOR_CODE: Partial<Record<VerdictError['code'], number>> = {
  USAGE: EXIT.USAGE,
  POLICY_DIR_MISSING: EXIT.POLICY_INVALID,
  POLICY_INVALID: EXIT.POLICY_INVALID,
  INPUT_INVALID: EXIT.INPUT,
  INPUT_UNREADABLE: EXIT.INPUT,
  CONFIG_INVALID: EXIT.USAGE,
  DECISION_LOG_UNAVAILABLE: EXIT.INPUT,
  NOT_FOUND: EXIT.INPUT,
};

/** The `verdict` command line. Returns the exit code; never throws. */
export async function main(argv: string[], io: CommandIO = processIO): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    (name === undefined ? io.stderr : io.stdout)(help());
    return name === undefined ? EXIT.USAGE : EXIT.OK;
  }
  if (name === '--version' || name === 'version') {
    io.stdout('verdict 0.1.0\n');
    return EXIT.OK;
  }
  const command = COMMANDS[name];
  if (!command) {
    io.stderr(`verdict: unknown command "${name}"; run "verdict --help" for the list\n`);
    return EXIT.USAGE;
  }
  try {
    return await (await command.run())(rest, io);
  } catch (error) {
    if (error instanceof VerdictError) {
      io.stderr(`verdict ${name}: ${error.message}\n`);
      return EXIT_FOR_CODE[error.code] ?? EXIT.FAILED;
    }
    io.stderr(`verdict ${name}: unexpected error: ${messageOf(error)}\n`);
    if (process.env.VERDICT_DEBUG) io.stderr(`${(error as Error).stack ?? ''}\n`);
    return EXIT.FAILED;
  }
}
