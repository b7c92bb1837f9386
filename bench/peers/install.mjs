// Peers are installed on demand into bench/.peers/ (git-ignored), never into the
// project's own dependencies: `npm install --prefix bench/.peers --no-save` of pinned
// versions, once; later runs find them there and install nothing.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const PEERS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '.peers');

/** name → version range; the installed version is printed with every result. */
export const PEERS = {
  '@cerbos/cerbos-linux-x64': '0.55',
  '@cerbos/api': '0.8', // Cerbos's generated protobuf messages (@bufbuild/protobuf), for the gRPC request frame
  '@cedar-policy/cedar-wasm': '4.13',
  casbin: '5.51',
};

const require = createRequire(path.join(PEERS_DIR, 'noop.js'));

function installedVersion(name) {
  try {
    return JSON.parse(fs.readFileSync(path.join(PEERS_DIR, 'node_modules', name, 'package.json'), 'utf8')).version;
  } catch {
    return null;
  }
}

const satisfies = (version, range) => version !== null && (version === range || version.startsWith(`${range}.`));

/** Installs every peer that is missing or of another version; returns name → installed version. */
export function ensurePeers(log = console.log, names = Object.keys(PEERS)) {
  const missing = names.filter((name) => !satisfies(installedVersion(name), PEERS[name]));
  if (missing.length > 0) {
    fs.mkdirSync(PEERS_DIR, { recursive: true });
    // Every peer at once, whichever are asked for: npm prunes what an install does not name.
    const specs = Object.entries(PEERS).map(([name, range]) => `${name}@${range}`);
    log(`installing peers into ${path.relative(process.cwd(), PEERS_DIR) || PEERS_DIR}: ${specs.join(' ')}`);
    const result = spawnSync('npm', ['install', '--prefix', PEERS_DIR, '--no-save', '--no-package-lock', '--no-audit', '--no-fund', '--loglevel=error', ...specs], {
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    if (result.status !== 0) throw new Error(`npm install of the peers failed (exit ${result.status ?? result.signal})`);
  }
  return Object.fromEntries(names.map((name) => [name, installedVersion(name)]));
}

/** Imports a peer package (or a subpath of it) from bench/.peers/. */
export async function importPeer(specifier) {
  let resolved;
  try {
    resolved = require.resolve(specifier);
  } catch {
    // ESM-only packages (exports with "import" only) are not resolvable by require.
    resolved = resolveEsm(specifier);
  }
  return import(pathToFileURL(resolved).href);
}

function resolveEsm(specifier) {
  const parts = specifier.split('/');
  const nameLength = specifier.startsWith('@') ? 2 : 1;
  const name = parts.slice(0, nameLength).join('/');
  const sub = parts.slice(nameLength).join('/');
  const dir = path.join(PEERS_DIR, 'node_modules', name);
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  const pick = (entry) => (typeof entry === 'string' ? entry : (entry?.import?.default ?? entry?.import ?? entry?.default));
  if (!sub) return path.join(dir, pick(pkg.exports?.['.']) ?? pkg.module ?? pkg.main);
  for (const [pattern, target] of Object.entries(pkg.exports ?? {})) {
    const wanted = `./${sub}`;
    const t = pick(target);
    if (pattern === wanted) return path.join(dir, t);
    if (pattern.endsWith('*') && wanted.startsWith(pattern.slice(0, -1))) return path.join(dir, t.replace('*', wanted.slice(pattern.length - 1)));
  }
  throw new Error(`cannot resolve ${specifier} in ${PEERS_DIR}`);
}

export function cerbosBinary() {
  const file = path.join(PEERS_DIR, 'node_modules', '@cerbos', 'cerbos-linux-x64', 'cerbos-linux-x64');
  if (!fs.existsSync(file)) throw new Error(`the Cerbos server binary is not at ${file}`);
  return file;
}
