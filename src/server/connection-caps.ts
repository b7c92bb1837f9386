// How many connections each listener may hold, so that connections, however many a
// caller opens, never take the file descriptors the decision log, the key stores
// and the policy files need: a cap above what the process may open protects nothing.

import { readFileSync } from 'node:fs';
import type { Server, Socket } from 'node:net';

/** File descriptors kept for everything but connections: the log and its -wal, key stores, policy files, git, threads. */
export const RESERVED_FILE_DESCRIPTORS = 256;

/** The listeners' caps as configured (httpMaxConnections, grpcMaxConnections), by listener name. */
export type ConnectionCaps = Readonly<Record<string, number>>;

export interface FittedCaps {
  readonly caps: ConnectionCaps;
  /** Why the caps were lowered, for the operator; null when they fit. */
  readonly warning: string | null;
}

/**
 * The process's soft limit on open files, from /proc/self/limits; null where that
 * cannot be read (not Linux) or says unlimited.
 */
export function openFileLimit(limitsText: string | null = readProcLimits()): number | null {
  if (limitsText === null) return null;
  const line = /^Max open files\s+(\S+)/m.exec(limitsText);
  if (line === null) return null;
  const soft = Number(line[1]);
  return Number.isSafeInteger(soft) && soft > 0 ? soft : null;
}

function readProcLimits(): string | null {
  try {
    return readFileSync('/proc/self/limits', 'utf8');
  } catch {
    return null;
  }
}

/**
 * The caps, lowered where together they would leave fewer than RESERVED_FILE_DESCRIPTORS
 * of `limit` free: each listener gets an equal part of what is left (never more than it
 * asked for, at least 1). With no limit known, the caps stand as configured.
 */
export function fitConnectionCaps(wanted: ConnectionCaps, limit: number | null): FittedCaps {
  const names = Object.keys(wanted);
  const total = names.reduce((sum, name) => sum + wanted[name]!, 0);
  if (limit === null || total + RESERVED_FILE_DESCRIPTORS <= limit) return { caps: wanted, warning: null };
  const share = Math.max(1, Math.floor((limit - RESERVED_FILE_DESCRIPTORS) / names.length));
  const caps: Record<string, number> = {};
  for (const name of names) caps[name] = Math.min(wanted[name]!, share);
  const lowered = names.filter((name) => caps[name] !== wanted[name]).map((name) => `${name} ${wanted[name]} -> ${caps[name]}`);
  return {
    caps,
    warning: `the open-file limit (${limit}) is below what the listeners may hold plus ${RESERVED_FILE_DESCRIPTORS} for the log and key stores (${total + RESERVED_FILE_DESCRIPTORS}); connections capped lower: ${lowered.join(', ')}. Raise the limit (ulimit -n, systemd LimitNOFILE=) to serve more`,
  };
}

/** The most connections one client address may hold on a listener capped at `listenerCap`: `configured`, or a quarter of the cap. */
export function perClientCap(listenerCap: number, configured: number | null | undefined): number {
  return configured ?? Math.max(1, Math.ceil(listenerCap / 4));
}

/**
 * Closes, unanswered, each new connection from an address that already holds `perClient`
 * of this listener's connections: under the listener's cap alone, one client holding
 * idle or half-sent requests took every slot, and gateways connecting meanwhile were
 * refused. Connections without an address (a Unix socket) are not counted.
 */
export function capConnectionsPerClient(server: Server, perClient: number): void {
  const held = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress;
    if (address === undefined) return;
    const count = held.get(address) ?? 0;
    if (count >= perClient) {
      socket.destroy();
      return;
    }
    held.set(address, count + 1);
    socket.once('close', () => {
      const left = (held.get(address) ?? 1) - 1;
      if (left <= 0) held.delete(address);
      else held.set(address, left);
    });
  });
}
