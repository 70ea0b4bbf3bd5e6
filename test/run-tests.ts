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
import { mkdtemp, rm } from 'node:fs/promises';
import { constants, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateTlsMaterial, writeTlsMaterial } from './support/tls-material.js';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const defaultFiles = ['test/**/*.test.ts'];
// The slowest test (a real synth with bundling, under load) takes well under a minute.
const testTimeoutMs = 180_000;

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
    await writeTlsMaterial(tlsDir, await generateTlsMaterial());

    const args = [
      '--import',
      'tsx',
      '--test',
      '--test-concurrency=2',
      // A test or hook that hangs fails with its name after this long, instead of stalling CI.
      `--test-timeout=${testTimeoutMs}`,
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
