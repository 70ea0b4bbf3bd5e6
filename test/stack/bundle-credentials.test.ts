/**
 * The Lambda bundle replaces the SDK's profile, SSO, credential-process and web-identity providers
 * (lib/lambda-bundle.ts, lambdas/bundle/unbundled-credential-providers.ts). A probe bundled with the same options
 * shows what the SDK's default chain still does: it reads the credentials Lambda puts in the environment, and
 * moves past the replaced providers to the container credentials endpoint.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { listenOnLoopback } from '../../lambdas/local/listen.js';
import { esbuildOptions } from '../../lib/lambda-bundle.js';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

/** Runs the bundled probe in a fresh process with only `env` (and PATH); its printed outcome. */
function runProbe(bundle: string, env: Record<string, string>): Promise<{ accessKeyId?: string; error?: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bundle], {
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`the probe exited with ${code}:\n${stderr}`));
      else resolve(JSON.parse(stdout));
    });
  });
}

describe('credentials in the Lambda bundle', () => {
  const workDir = mkdtempSync(join(tmpdir(), 'token-broker-credentials-'));
  const bundle = join(workDir, 'probe.mjs');
  let endpoint: Server;
  let endpointUrl: string;
  const endpointRequests: IncomingHttpHeaders[] = [];
  // No shared config or credentials files: nothing on this machine may answer for the chain.
  const isolated = {
    HOME: workDir,
    AWS_CONFIG_FILE: join(workDir, 'config'),
    AWS_SHARED_CREDENTIALS_FILE: join(workDir, 'credentials'),
    AWS_REGION: 'us-east-1',
    AWS_EC2_METADATA_DISABLED: 'true',
  };

  before(async () => {
    await build(esbuildOptions(repoRoot, 'test/support/credentials-probe.ts', bundle));
    // The container credentials endpoint, as ECS, EKS Pod Identity or Lambda's own container runtimes serve it.
    endpoint = createServer((request, response) => {
      endpointRequests.push(request.headers);
      response.setHeader('content-type', 'application/json');
      response.end(
        JSON.stringify({
          AccessKeyId: 'ASIACONTAINER',
          SecretAccessKey: 'container-secret',
          Token: 'container-session',
          Expiration: new Date(Date.now() + 3_600_000).toISOString(),
        }),
      );
    });
    endpointUrl = `http://127.0.0.1:${await listenOnLoopback(endpoint)}/credentials`;
  });
  after(async () => {
    await new Promise((resolve) => endpoint?.close(resolve));
    rmSync(workDir, { recursive: true, force: true });
  });

  it('reads the credentials Lambda puts in the environment', async () => {
    const outcome = await runProbe(bundle, {
      ...isolated,
      AWS_ACCESS_KEY_ID: 'ASIAENVIRONMENT',
      AWS_SECRET_ACCESS_KEY: 'environment-secret',
      AWS_SESSION_TOKEN: 'environment-session',
    });
    assert.deepEqual(outcome, { accessKeyId: 'ASIAENVIRONMENT' });
  });

  it('moves past the replaced providers to the container credentials endpoint', async () => {
    const before = endpointRequests.length;
    const outcome = await runProbe(bundle, {
      ...isolated,
      AWS_CONTAINER_CREDENTIALS_FULL_URI: endpointUrl,
      AWS_CONTAINER_AUTHORIZATION_TOKEN: 'container-authorization',
    });
    assert.deepEqual(outcome, { accessKeyId: 'ASIACONTAINER' });
    assert.equal(endpointRequests.length - before, 1);
    assert.equal(endpointRequests.at(-1)?.authorization, 'container-authorization');
  });

  it('does not read a named profile: the profile reader is not bundled', async () => {
    const outcome = await runProbe(bundle, { ...isolated, AWS_PROFILE: 'developer' });
    assert.match(outcome.error ?? '', /Could not load credentials from any providers/);
  });
});
