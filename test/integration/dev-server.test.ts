import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { assertNoLeak } from '../support/logs.js';

const devServer = fileURLToPath(new URL('../../lambdas/local/dev-server.ts', import.meta.url));
let child: ChildProcess;
let baseUrl: string;
let output = '';

/** The child's log lines arrive on a pipe, possibly after its HTTP answer. */
async function outputMatching(pattern: RegExp): Promise<void> {
  for (let waited = 0; !pattern.test(output) && waited < 5_000; waited += 20) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.match(output, pattern);
}

describe('npm start: the local dev server on embedded defaults', () => {
  before(async () => {
    child = spawn(process.execPath, ['--import', 'tsx', devServer], {
      env: { ...process.env, PORT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.on('data', (chunk) => {
      output += chunk;
    });
    baseUrl = await new Promise<string>((resolve, reject) => {
      child.stderr?.on('data', (chunk) => {
        output += chunk;
        const match = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
        if (match?.[1]) resolve(match[1]);
      });
      child.once('exit', (code) => reject(new Error(`dev server exited with ${code}: ${output}`)));
    });
  });

  after(async () => {
    child.kill('SIGTERM');
    if (child.exitCode === null) await once(child, 'exit');
  });

  it('answers POST /clients/demo/token with a token and no AWS account', async () => {
    const response = await fetch(`${baseUrl}/clients/demo/token`, { method: 'POST' });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('cache-control'), 'no-store');
    const token = (await response.json()) as Record<string, unknown>;
    assert.deepEqual(Object.keys(token).sort(), ['access_token', 'expires_in', 'scope', 'token_type']);
    assert.equal(token.scope, 'demo.read');

    const again = (await (await fetch(`${baseUrl}/clients/demo/token`, { method: 'POST' })).json()) as Record<
      string,
      unknown
    >;
    assert.equal(again.access_token, token.access_token);
    await outputMatching(/"cache":"memory"/);
    assertNoLeak(output, [token.access_token as string]);
  });

  it('answers bad requests with OAuth-style errors', async () => {
    const refused = await fetch(`${baseUrl}/clients/demo/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ scope: 'admin' }),
    });
    assert.equal(refused.status, 400);
    assert.equal(((await refused.json()) as { error: string }).error, 'invalid_scope');
    const unknown = await fetch(`${baseUrl}/clients/nobody/token`, { method: 'POST' });
    assert.equal(unknown.status, 404);
  });
});
