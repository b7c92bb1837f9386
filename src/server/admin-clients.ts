// The admin certificates' file: the client-certificate identities admitted to Admin,
// one per line, read again as it changes (watched-file.ts), so that revoking an
// operator's certificate takes effect from the next call rather than at the next
// restart.

import { WatchedFile, type FileKind } from './watched-file.js';

/** The most identities the file may list, as for `admin.clients`. */
const MAX_IDENTITIES = 1000;
/** The longest identity, as for `admin.clients`. */
const MAX_IDENTITY_LENGTH = 1024;
/** The kinds of identity a client certificate gives (see certificateIdentity in authn/mtls.ts). */
const IDENTITY_KINDS = ['uri:', 'dns:', 'cn:'] as const;

/** The admin certificates file: `#` starts a comment line; blank lines are skipped. */
const CLIENTS_FILE: FileKind<ReadonlySet<string>> = {
  configKey: 'admin.clientsFile',
  maxBytes: 256 * 1024,
  parse(path, text) {
    const identities = new Set<string>();
    const lines = text.split('\n');
    for (let index = 0; index < lines.length; index++) {
      const line = lines[index]!.trim();
      if (line === '' || line.startsWith('#')) continue;
      const at = `${path}:${index + 1}`;
      if (!IDENTITY_KINDS.some((kind) => line.startsWith(kind) && line.length > kind.length)) {
        return { problem: `${at}: ${JSON.stringify(line.slice(0, 80))} is not a certificate identity; write one as verdict records callers: ${IDENTITY_KINDS.map((kind) => `${kind}…`).join(', ')}` };
      }
      if (line.length > MAX_IDENTITY_LENGTH) return { problem: `${at}: an identity may be at most ${MAX_IDENTITY_LENGTH} characters` };
      identities.add(line);
      if (identities.size > MAX_IDENTITIES) return { problem: `${at}: the file may list at most ${MAX_IDENTITIES} identities` };
    }
    return { value: identities };
  },
  same: (a, b) => a.size === b.size && [...a].every((identity) => b.has(identity)),
};

export type AdminClientsFile = WatchedFile<ReadonlySet<string>>;

/**
 * Reads the admin certificates file at start.
 * @throws VerdictError CONFIG_INVALID when the file cannot be read or a line is not an identity
 */
export function openAdminClientsFile(path: string): AdminClientsFile {
  return WatchedFile.open(path, CLIENTS_FILE);
}
