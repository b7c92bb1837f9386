/**
 * The host of a caller recorded by its peer address (`10.0.0.7:41234`,
 * `[2001:db8::1]:5000`, and grpc-js's bracketless `2001:db8::1:5000`), IPv6 in
 * lower case; null for anything else. Only an IP address and port is a peer
 * address: `jwt:1001` is not the host `jwt` on port 1001.
 */
export function peerHost(caller: string): string | null {
  const v4 = /^(\d{1,3}(?:\.\d{1,3}){3}):\d+$/.exec(caller);
  if (v4 !== null) return v4[1]!;
  const v6 = /^\[([0-9a-fA-F:.]+)\]:\d+$/.exec(caller) ?? /^([0-9a-fA-F]*:[0-9a-fA-F:.]*:[0-9a-fA-F.]*):\d+$/.exec(caller);
  return v6 === null ? null : v6[1]!.toLowerCase();
}
