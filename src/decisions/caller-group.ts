// Which callers share one turn when the deciding thread serves long calls in turns
// (decide/slices.ts): those from one host share, then take turns among themselves.

/**
 * The group a caller's long calls share their turns with: a caller recorded by its
 * address (`10.0.0.7:41234`, `[2001:db8::1]:5000`: gRPC and forward-auth without a
 * credential, one caller per connection) is grouped by host, an IPv6 one by its /64,
 * so opening more connections buys no more turns; an identity (`api-key:…`, `jwt:…`,
 * a certificate's) is its own group.
 */
export function callerGroup(caller: string): string {
  const v4 = /^(\d{1,3}(?:\.\d{1,3}){3}):\d+$/.exec(caller);
  if (v4 !== null) return v4[1]!;
  const v6 = /^\[([0-9a-fA-F:.]+)\]:\d+$/.exec(caller);
  if (v6 !== null) {
    const address = v6[1]!;
    // An IPv4 client on a dual-stack socket (`::ffff:10.0.0.7`) is its IPv4 host.
    if (address.includes('.')) return address.slice(address.lastIndexOf(':') + 1);
    return `${ipv6Prefix64(address)}::/64`;
  }
  // grpc-js and the direct lane write an IPv6 peer without brackets: `2001:db8::1:5000`.
  const bare = /^([0-9a-fA-F]*:[0-9a-fA-F:.]*:[0-9a-fA-F.]*):\d+$/.exec(caller);
  if (bare !== null) return callerGroup(`[${bare[1]!}]:0`);
  return caller;
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
