import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A throwaway PKI made with openssl at test time (nothing is committed): two CAs,
 * a server certificate for 127.0.0.1/localhost, and client certificates.
 */
export interface TestPki {
  readonly dir: string;
  readonly ca: { cert: string; key: string };
  readonly otherCa: { cert: string; key: string };
  readonly server: { cert: string; key: string };
  /** CN gateway-1 and a SPIFFE URI SAN: identity `uri:spiffe://verdict.test/ns/edge/sa/gateway`. */
  readonly spiffeClient: { cert: string; key: string };
  /** CN nginx-edge only: identity `cn:nginx-edge`. */
  readonly cnClient: { cert: string; key: string };
  /** An operator's certificate: identity `uri:spiffe://verdict.test/ns/ops/sa/admin`. */
  readonly adminClient: { cert: string; key: string };
  /** Signed by otherCa. */
  readonly strangerClient: { cert: string; key: string };
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

function makeCa(dir: string, name: string): { cert: string; key: string } {
  const key = join(dir, `${name}.key`);
  const cert = join(dir, `${name}.crt`);
  openssl(dir, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  return { cert, key };
}

function makeLeaf(dir: string, name: string, subject: string, ca: { cert: string; key: string }, extensions: string[]): { cert: string; key: string } {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.crt`);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, ['basicConstraints=CA:FALSE', ...extensions].join('\n') + '\n');
  openssl(dir, ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', csr, '-subj', subject]);
  openssl(dir, ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', ext]);
  return { cert, key };
}

export function makeTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'verdict-pki-'));
  const ca = makeCa(dir, 'verdict-test-ca');
  const otherCa = makeCa(dir, 'other-ca');
  return {
    dir,
    ca,
    otherCa,
    server: makeLeaf(dir, 'server', '/CN=verdict-server', ca, ['subjectAltName=IP:127.0.0.1,DNS:localhost', 'extendedKeyUsage=serverAuth']),
    spiffeClient: makeLeaf(dir, 'gateway-1', '/CN=gateway-1', ca, ['subjectAltName=URI:spiffe://verdict.test/ns/edge/sa/gateway', 'extendedKeyUsage=clientAuth']),
    cnClient: makeLeaf(dir, 'nginx-edge', '/O=Acme/CN=nginx-edge', ca, ['extendedKeyUsage=clientAuth']),
    adminClient: makeLeaf(dir, 'ops-admin', '/CN=ops-admin', ca, ['subjectAltName=URI:spiffe://verdict.test/ns/ops/sa/admin', 'extendedKeyUsage=clientAuth']),
    strangerClient: makeLeaf(dir, 'stranger', '/CN=gateway-1', otherCa, ['subjectAltName=URI:spiffe://verdict.test/ns/edge/sa/gateway', 'extendedKeyUsage=clientAuth']),
  };
}

/**
 * A certificate signed by `issuer` that is valid from a minute ago until `validTo`
 * (openssl ca sets exact dates; x509 -req only whole days).
 */
function issueUntil(dir: string, issuer: { cert: string; key: string }, name: string, extensions: string[], validTo: Date, validFrom = new Date(Date.now() - 60_000), subject = `/CN=${name}`): { cert: string; key: string } {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.crt`);
  const ext = join(dir, `${name}.ext`);
  const config = join(dir, `${name}.ca.cnf`);
  const database = join(dir, `${name}.index.txt`);
  writeFileSync(database, '');
  writeFileSync(join(dir, `${name}.serial`), '1000\n');
  writeFileSync(
    config,
    [
      '[ca]',
      'default_ca = short',
      '[short]',
      `database = ${database}`,
      `new_certs_dir = ${dir}`,
      `serial = ${join(dir, `${name}.serial`)}`,
      'default_md = sha256',
      'policy = any',
      'unique_subject = no',
      '[any]',
      'commonName = supplied',
      '',
    ].join('\n'),
  );
  writeFileSync(ext, extensions.join('\n') + '\n');
  openssl(dir, ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', csr, '-subj', subject]);
  // Two-digit years (UTCTime) up to 2049, four digits (GeneralizedTime) from 2050, as X.509 encodes them.
  const asn1 = (d: Date): string => d.toISOString().replace(/[-:T]/g, '').replace(/\.\d{3}Z$/, 'Z').slice(d.getUTCFullYear() >= 2050 ? 0 : 2);
  openssl(dir, ['ca', '-batch', '-config', config, '-cert', issuer.cert, '-keyfile', issuer.key, '-in', csr, '-out', cert, '-startdate', asn1(validFrom), '-enddate', asn1(validTo), '-extfile', ext, '-notext']);
  return { cert, key };
}

/** Whole seconds from now: a certificate's times have no finer precision. */
function secondsFromNow(ms: number): Date {
  return new Date(Math.ceil((Date.now() + ms) / 1000) * 1000);
}

function clientExtensions(uri: string): string[] {
  return ['basicConstraints=CA:FALSE', `subjectAltName=URI:${uri}`, 'extendedKeyUsage=clientAuth'];
}

/** A client certificate signed by `pki.ca` that is valid from a minute ago until `validForMs` from now. */
export function makeShortLivedClient(pki: TestPki, name: string, uri: string, validForMs: number): { cert: string; key: string; validTo: Date } {
  const validTo = secondsFromNow(validForMs);
  return { ...issueUntil(pki.dir, pki.ca, name, clientExtensions(uri), validTo), validTo };
}

/**
 * A client certificate valid for two days, signed by an intermediate CA (signed by
 * `pki.ca`) that expires `validForMs` from now. `cert` holds the client certificate
 * and the intermediate, as a client presents its chain.
 */
export function makeClientUnderShortLivedIntermediate(pki: TestPki, name: string, uri: string, validForMs: number): { cert: string; key: string; validTo: Date } {
  const validTo = secondsFromNow(validForMs);
  const intermediate = issueUntil(pki.dir, pki.ca, `${name}-ca`, ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign'], validTo);
  const leaf = issueUntil(pki.dir, intermediate, name, clientExtensions(uri), secondsFromNow(2 * 86_400_000));
  const chain = join(pki.dir, `${name}.chain.crt`);
  writeFileSync(chain, readFileSync(leaf.cert, 'utf8') + readFileSync(intermediate.cert, 'utf8'));
  return { cert: chain, key: leaf.key, validTo };
}

/**
 * A client certificate valid for two days under an intermediate valid for two days,
 * sent with a look-alike of that intermediate first: the same name and key
 * identifier, another key, valid only from 2090, and signed by a look-alike of
 * `pki.ca` (its name and key identifier, another key). TLS verifies the chain through
 * the real intermediate (it skips issuers not yet valid); node lists the look-alike
 * as the issuer, then the real CA above it, since it matches names and key
 * identifiers only: a chain to a trusted CA unless each signature is checked.
 */
export function makeClientWithLookAlikeIntermediate(pki: TestPki, name: string, uri: string): { cert: string; honestCert: string; key: string } {
  const days = secondsFromNow(2 * 86_400_000);
  const intermediate = issueUntil(pki.dir, pki.ca, `${name}-ca`, ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign', 'subjectKeyIdentifier=hash'], days);
  const leaf = issueUntil(pki.dir, intermediate, name, clientExtensions(uri), days);
  const keyIdOf = (cert: string): string => execFileSync('openssl', ['x509', '-in', cert, '-noout', '-ext', 'subjectKeyIdentifier'], { encoding: 'utf8' }).split('\n')[1]!.trim();
  const keyId = keyIdOf(intermediate.cert);
  const fakeCa = { cert: join(pki.dir, `${name}-fake-ca.crt`), key: join(pki.dir, `${name}-fake-ca.key`) };
  const caName = execFileSync('openssl', ['x509', '-in', pki.ca.cert, '-noout', '-subject', '-nameopt', 'compat'], { encoding: 'utf8' }).replace(/^subject=/, '').trim();
  openssl(pki.dir, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', fakeCa.key, '-out', fakeCa.cert, '-days', '2', '-subj', caName,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-addext', `subjectKeyIdentifier=${keyIdOf(pki.ca.cert)}`]);
  const lookAlike = issueUntil(
    pki.dir,
    fakeCa,
    `${name}-look-alike`,
    ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign', `subjectKeyIdentifier=${keyId}`],
    new Date(Date.UTC(2099, 0, 1)),
    new Date(Date.UTC(2090, 0, 1)),
    `/CN=${name}-ca`,
  );
  const chain = join(pki.dir, `${name}.look-alike-chain.crt`);
  writeFileSync(chain, [leaf.cert, lookAlike.cert, intermediate.cert].map((file) => readFileSync(file, 'utf8')).join(''));
  const honest = join(pki.dir, `${name}.chain.crt`);
  writeFileSync(honest, [leaf.cert, intermediate.cert].map((file) => readFileSync(file, 'utf8')).join(''));
  return { cert: chain, honestCert: honest, key: leaf.key };
}
