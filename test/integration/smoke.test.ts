import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { listenOnLoopback } from '../../lambdas/local/listen.js';
import { type DevServerProcess, runScript, startDevServerProcess } from '../support/dev-server-process.js';
import { assertNoLeak } from '../support/logs.js';

const smokePath = fileURLToPath(new URL('../../bin/smoke.ts', import.meta.url));
const functionName = 'token-broker-local';
const client = 'bwell';

describe('npm run smoke: the post-deploy smoke test, against the local server', () => {
  let server: DevServerProcess;
  let workDir: string;
  /** What the README says to run in: the variables the server printed, pasted into a shell. */
  let lambdaEndpoint: NodeJS.ProcessEnv;

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'smoke-test-'));
    server = await startDevServerProcess();
    assert.ok(server.caller !== undefined);
    lambdaEndpoint = { ...server.caller.environment, AWS_PROFILE: undefined, AWS_SESSION_TOKEN: undefined };
  });

  after(async () => {
    await server?.close();
    await rm(workDir, { recursive: true, force: true });
  });

  it('passes every check over HTTP and the Invoke API and prints the token only by its length', async () => {
    const run = await runScript(
      smokePath,
      ['--api-url', server.baseUrl, '--client', client, '--function', functionName],
      lambdaEndpoint,
    );
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const lines = run.stdout.trim().split('\n');
    assert.equal(lines.length, 5, run.stdout);
    assert.match(lines[0] ?? '', /^PASS +http +token for bwell: token served \(length \d+, expires_in \d+, scope "/);
    assert.match(lines[1] ?? '', /^PASS +invoke +token for bwell through its alias: token served/);
    assert.match(
      lines[2] ?? '',
      /^PASS +http +unlisted client smoke-unlisted-[0-9a-f]+: refused \(HTTP 404, unknown_client\)/,
    );
    assert.match(
      lines[3] ?? '',
      /^PASS +invoke +unlisted client smoke-unlisted-[0-9a-f]+: refused \(ResourceNotFoundException\)/,
    );
    assert.match(lines[4] ?? '', /^smoke: OK \(4 passed, 0 failed, 0 skipped\)$/);

    // The broker serves the token it cached for the smoke test's requests.
    const token = (await (await server.fetch(`/clients/${client}/token`, { method: 'POST' })).json()) as {
      access_token: string;
    };
    assert.match(lines[0] ?? '', new RegExp(`length ${token.access_token.length},`));
    assertNoLeak(run.stdout + run.stderr, [token.access_token]);
  });

  it('fails, and says which check, when an unlisted client is served or the function cannot be invoked', async () => {
    const run = await runScript(
      smokePath,
      ['--api-url', server.baseUrl, '--client', client, '--function', 'no-such-function', '--unlisted-client', 'demo'],
      lambdaEndpoint,
    );
    assert.equal(run.code, 1, run.stdout + run.stderr);
    assert.match(run.stdout, /^PASS +http +token for bwell/m);
    assert.match(run.stdout, /^FAIL +invoke +token for bwell through its alias: .*ResourceNotFoundException/m);
    assert.match(run.stdout, /^FAIL +http +unlisted client demo: a token was served/m);
    // No token came through the alias, so a refusal there would prove nothing.
    assert.match(run.stdout, /^SKIP +invoke +unlisted client demo: inconclusive/m);
    assert.match(run.stdout, /^smoke: FAILED \(1 passed, 2 failed, 1 skipped\)$/m);
  });

  it('reads the API URL and the function name from the cdk deploy outputs file', async () => {
    const outputsFile = join(workDir, 'outputs.json');
    await writeFile(
      outputsFile,
      JSON.stringify({ TokenBroker: { ApiUrl: `${server.baseUrl}/`, FunctionName: functionName, TableName: 't' } }),
    );
    const run = await runScript(smokePath, ['--outputs', outputsFile, '--client', 'demo'], lambdaEndpoint);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /^PASS +invoke +token for demo through its alias/m);
    assert.match(run.stdout, /^smoke: OK \(4 passed, 0 failed, 0 skipped\)$/m);
  });

  it('exits with a usage message when the API is not named', async () => {
    const run = await runScript(smokePath, ['--client', client]);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /name the API with --api-url or --outputs/);
    assert.equal(run.stdout, '');
  });

  it('refuses a plain http API URL to anything but loopback, before sending', async () => {
    const run = await runScript(smokePath, ['--api-url', 'http://broker.example.com/v1/', '--client', client], {
      AWS_REGION: 'us-east-1',
    });
    assert.equal(run.code, 2, run.stdout + run.stderr);
    assert.match(run.stderr, /--api-url: baseUrl is refused: plain http is allowed only to loopback/);
    assert.equal(run.stdout, '');
  });

  it('prints nothing of an endpoint with its control characters: no escape sequence, no forged line', async () => {
    const hostile = createServer((request, response) => {
      request.resume();
      const unlisted = request.url?.includes('smoke-unlisted') === true;
      response.writeHead(unlisted ? 400 : 200, { 'content-type': 'application/json' });
      response.end(
        JSON.stringify(
          unlisted
            ? { error: 'invalid_request', error_description: 'no\r\nPASS  http    forged\u001b[2K\u009b1m' }
            : { access_token: 'x'.repeat(20), token_type: 'Bearer', expires_in: 3600, scope: 'a\u001b]0;title\u0007b' },
        ),
      );
    });
    const port = await listenOnLoopback(hostile);
    try {
      const run = await runScript(smokePath, ['--api-url', `http://127.0.0.1:${port}`, '--client', client], {
        ...lambdaEndpoint,
      });
      assert.equal(run.code, 1, run.stdout + run.stderr);
      // biome-ignore lint/suspicious/noControlCharactersInRegex: looking for control characters
      assert.doesNotMatch(run.stdout, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
      assert.doesNotMatch(run.stdout, /^PASS +http +forged/m);
      assert.match(run.stdout, /^PASS +http +token for bwell: token served .*scope "a\uFFFD\]0;title\uFFFDb"\)$/m);
      assert.match(run.stdout, /^FAIL +http +unlisted client .*no PASS http forged\uFFFD\[2K\uFFFD1m$/m);
    } finally {
      hostile.close();
    }
  });
});
