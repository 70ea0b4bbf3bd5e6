/**
 * Test runner behind `npm test`: `tsx test/run-tests.ts [node flags...] [files...]`.
 *
 * Node reads NODE_EXTRA_CA_CERTS only when a process starts, so the TLS material the tests trust has to
 * exist before the test processes do. This runner therefore:
 *   1. generates a throw-away CA and one server certificate it signs (SANs localhost, 127.0.0.1, ::1;
 *      valid for a day) into a fresh temporary directory — keys are made at run time, never committed;
 *   2. runs `node --import tsx --test --test-concurrency=2 <files>` with NODE_EXTRA_CA_CERTS pointing at
 *      the CA, TEST_TLS_DIR pointing at the directory (see test/support/tls.ts) and dummy AWS
 *      credentials/region so that the AWS SDK never goes looking for real ones;
 *   3. removes the directory and exits with the child's exit code.
 *
 * Arguments starting with `-` are passed to node before the files (e.g. `--test-name-pattern=...`);
 * the others replace the default file glob.
 */
import { spawn } from 'node:child_process';
import { webcrypto } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { constants, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

type X509 = typeof import('@peculiar/x509');

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const defaultFiles = ['test/**/*.test.ts'];

const keyAlgorithm: webcrypto.EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
const signingAlgorithm: webcrypto.EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };

interface TlsMaterial {
  caCertPem: string;
  serverKeyPem: string;
  serverCertPem: string;
}

async function loadX509(): Promise<X509> {
  // @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata API loaded first.
  await import('reflect-metadata');
  return import('@peculiar/x509');
}

async function generateTlsMaterial(): Promise<TlsMaterial> {
  const x509 = await loadX509();
  x509.cryptoProvider.set(webcrypto);
  const notBefore = new Date(Date.now() - 5 * 60 * 1000);
  const notAfter = new Date(Date.now() + 24 * 60 * 60 * 1000);

  const caKeys = await webcrypto.subtle.generateKey(keyAlgorithm, true, ['sign', 'verify']);
  const caName = 'CN=token-broker test CA (generated per test run)';
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: caName,
    notBefore,
    notAfter,
    keys: caKeys,
    signingAlgorithm,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });

  const serverKeys = await webcrypto.subtle.generateKey(keyAlgorithm, true, ['sign', 'verify']);
  const serverCert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: 'CN=localhost',
    issuer: caCert.subject,
    notBefore,
    notAfter,
    publicKey: serverKeys.publicKey,
    signingKey: caKeys.privateKey,
    signingAlgorithm,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        { type: 'dns', value: 'localhost' },
        { type: 'ip', value: '127.0.0.1' },
        { type: 'ip', value: '::1' },
      ]),
      await x509.SubjectKeyIdentifierExtension.create(serverKeys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });

  const serverKeyDer = await webcrypto.subtle.exportKey('pkcs8', serverKeys.privateKey);
  return {
    caCertPem: `${caCert.toString('pem')}\n`,
    serverCertPem: `${serverCert.toString('pem')}\n`,
    serverKeyPem: `${x509.PemConverter.encode(serverKeyDer, 'PRIVATE KEY')}\n`,
  };
}

/** A positive 128-bit serial number, hex encoded (the top bit cleared so DER keeps it positive). */
function randomSerial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return Buffer.from(bytes).toString('hex');
}

function childEnvironment(tlsDir: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NODE_EXTRA_CA_CERTS: join(tlsDir, 'ca.pem'),
    TEST_TLS_DIR: tlsDir,
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_REGION: 'us-east-1',
  };
  // Nothing from a developer's real AWS setup may pair with the dummy keys or redirect the SDK.
  for (const name of ['AWS_SESSION_TOKEN', 'AWS_PROFILE', 'AWS_DEFAULT_PROFILE', 'AWS_DEFAULT_REGION']) {
    delete env[name];
  }
  return env;
}

function runNodeTests(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: repoRoot, env, stdio: 'inherit' });
    const forward = (signal: NodeJS.Signals) => {
      child.kill(signal);
    };
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      process.off('SIGINT', forward);
      process.off('SIGTERM', forward);
      resolve(code ?? 128 + (signal ? constants.signals[signal] : 0));
    });
  });
}

async function main(): Promise<number> {
  const extra = process.argv.slice(2);
  const nodeFlags = extra.filter((arg) => arg.startsWith('-'));
  const files = extra.filter((arg) => !arg.startsWith('-'));

  const tlsDir = await mkdtemp(join(tmpdir(), 'token-broker-tls-'));
  try {
    const material = await generateTlsMaterial();
    await writeFile(join(tlsDir, 'ca.pem'), material.caCertPem, { mode: 0o644 });
    await writeFile(join(tlsDir, 'server-cert.pem'), material.serverCertPem, { mode: 0o644 });
    await writeFile(join(tlsDir, 'server-key.pem'), material.serverKeyPem, { mode: 0o600 });

    const args = [
      '--import',
      'tsx',
      '--test',
      '--test-concurrency=2',
      ...nodeFlags,
      ...(files.length > 0 ? files : defaultFiles),
    ];
    return await runNodeTests(args, childEnvironment(tlsDir));
  } finally {
    await rm(tlsDir, { recursive: true, force: true });
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error('test runner failed:', error);
    process.exitCode = 1;
  },
);
