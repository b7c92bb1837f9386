// Which callers share one turn when the deciding thread serves long calls in turns
// (decide/slices.ts): those from one host share, then take turns among themselves.

import { peerHost } from '../peer-address.js';

/**
 * The group a caller's long calls share their turns with: a caller recorded by its
 * address (`10.0.0.7:41234`, `[2001:db8::1]:5000`: gRPC and forward-auth without a
 * credential, one caller per connection) is grouped by host, an IPv6 one by its /64,
 * so opening more connections buys no more turns; an identity (`api-key:…`, `jwt:…`,
 * a certificate's) is its own group.
 */
export function callerGroup(caller: string): string {
  const host = peerHost(caller);
  if (host === null) return caller;
  if (!host.includes(':')) return host;
  // An IPv4 client on a dual-stack socket (`::ffff:10.0.0.7`) is its IPv4 host.
  if (host.includes('.')) return host.slice(host.lastIndexOf(':') + 1);
  return `${ipv6Prefix64(host)}::/64`;
}

/** The first four groups of an IPv6 address, `::` expanded. */
function ipv6Prefix64(address: string): string {
  const [head = '', tail] = address.toLowerCase().split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? left : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  return groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':');
}
