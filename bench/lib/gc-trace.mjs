// Reading `node --trace-gc-nvp` output: each line is one collection of one isolate.

/** One --trace-gc-nvp line's name=value pairs. */
function fields(line) {
  const out = {};
  for (const pair of line.trim().split(/\s+/)) {
    const at = pair.indexOf('=');
    if (at > 0) out[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return out;
}

/** Each isolate's collections printed so far: each line names its isolate ("[pid:0xaddress]   1234 ms: pause=… gc=s …"). */
export function collectionsByIsolate(output) {
  const byIsolate = new Map();
  for (const line of output.split('\n')) {
    const match = /^\[\d+:(0x[0-9a-f]+)\]\s+[\d.]+ ms: (.*)$/.exec(line);
    if (match === null || !/ gc=/.test(match[2])) continue;
    if (!byIsolate.has(match[1])) byIsolate.set(match[1], []);
    byIsolate.get(match[1]).push(fields(match[2]));
  }
  return byIsolate;
}
