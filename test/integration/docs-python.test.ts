/**
 * The Python snippets of docs/client.md, run as a reader copies them: each code block alone, by python3 with
 * botocore, in a shell holding the variables `npm start` prints, against a started dev server; the package's
 * snippet with packages/python installed (on PYTHONPATH, as `pip install` would put it). PyPI may be
 * out of reach, so the interpreter is whichever python3 imports boto3 (Debian's python3-boto3 lives in
 * /usr/bin/python3's dist-packages, which a pyenv python3 does not see). Without one the test is skipped,
 * loudly; under CI, where .ci/run installs python3-boto3, it fails instead.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { closedPort } from '../client/support.js';
import { type DevServerProcess, startDevServerProcess } from '../support/dev-server-process.js';
import { assertNoLeak } from '../support/logs.js';

const run = promisify(execFile);
const docs = await readFile(new URL('../../docs/client.md', import.meta.url), 'utf8');
const snippets = [...docs.matchAll(/^```python\n([\s\S]*?)^```$/gm)].map((match) => match[1] ?? '');

async function findPython(): Promise<string | undefined> {
  for (const candidate of ['/usr/bin/python3', 'python3']) {
    try {
      await run(candidate, ['-c', 'import boto3, botocore']);
      return candidate;
    } catch {
      // the next candidate
    }
  }
  return undefined;
}

const python = await findPython();
const packageSource = fileURLToPath(new URL('../../packages/python/src', import.meta.url));
const missing = 'no python3 that imports boto3/botocore (apt-get install python3-boto3, or pip install boto3)';
if (python === undefined) {
  if (process.env.CI) throw new Error(`docs/client.md Python snippets: ${missing}; .ci/run should have installed it`);
  process.stderr.write(`\n*** SKIPPING the docs/client.md Python snippets: ${missing} ***\n\n`);
}

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

describe('docs/client.md: the Python snippets, as copied, against npm start', { skip: python === undefined }, () => {
  let server: DevServerProcess;
  let workDir: string;
  let shell: NodeJS.ProcessEnv;

  before(async () => {
    server = await startDevServerProcess();
    workDir = await mkdtemp(join(tmpdir(), 'docs-python-'));
    assert.ok(server.caller !== undefined);
    // The test runner's own AWS variables, then what the server said to paste.
    const { AWS_PROFILE: _profile, AWS_SESSION_TOKEN: _token, ...inherited } = process.env;
    shell = { ...inherited, ...server.caller.environment };
  });

  after(async () => {
    await server?.close();
    if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
  });

  async function runSnippet(index: number, env: NodeJS.ProcessEnv): Promise<Ran> {
    const file = join(workDir, `snippet-${index}.py`);
    await writeFile(file, snippets[index] ?? '');
    try {
      const { stdout, stderr } = await run(python ?? 'python3', [file], {
        env: { ...env, PYTHONPATH: packageSource },
        timeout: 60_000,
      });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const failed = error as { code?: number; stdout?: string; stderr?: string };
      return { code: failed.code ?? -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
    }
  }

  it("documents the package's snippet, then two without it, over HTTP and by invoking the function", () => {
    assert.equal(snippets.length, 3);
    assert.match(snippets[0] ?? '', /TokenBrokerClient\.from_environment\(\)/);
    assert.match(snippets[1] ?? '', /SigV4Auth/);
    assert.match(snippets[1] ?? '', /os\.environ\.get\('TOKEN_BROKER_URL', 'http:\/\/127\.0\.0\.1:8787\/'\)/);
    assert.match(snippets[2] ?? '', /lambda_client\.invoke/);
    assert.match(snippets[2] ?? '', /os\.environ\.get\('TOKEN_BROKER_FUNCTION', 'token-broker-local'\)/);
  });

  it("the package's snippet (http, from TOKEN_BROKER_URL) prints a demo.read token's type, lifetime and scope", async () => {
    const ran = await runSnippet(0, shell);
    assert.equal(ran.code, 0, ran.stdout + ran.stderr);
    assert.match(ran.stdout, /^Bearer \d+ demo\.read\n$/);
    await server.outputMatching(/"channel":"http".*"client":"demo"/);
  });

  it("the package's snippet takes TOKEN_BROKER_FUNCTION when TOKEN_BROKER_URL is unset, and names a failure", async () => {
    const { TOKEN_BROKER_URL: _url, ...byInvoke } = shell;
    const ran = await runSnippet(0, byInvoke);
    assert.equal(ran.code, 0, ran.stdout + ran.stderr);
    assert.match(ran.stdout, /^Bearer \d+ demo\.read\n$/);
    const unreachable = await runSnippet(0, { ...shell, TOKEN_BROKER_URL: `http://127.0.0.1:${await closedPort()}/` });
    assert.equal(unreachable.code, 1);
    assert.match(
      unreachable.stderr.trim(),
      /^transport_error: cannot reach the broker at http:\/\/127\.0\.0\.1:\d+\/: .*[Cc]onnection refused/,
    );
  });

  for (const [index, channel] of [
    [1, 'http'],
    [2, 'invoke'],
  ] as const) {
    it(`snippet ${index + 1} (${channel}) prints a demo.read token's type, lifetime and scope`, async () => {
      const ran = await runSnippet(index, shell);
      assert.equal(ran.code, 0, ran.stdout + ran.stderr);
      assert.match(ran.stdout, /^Bearer \d+ demo\.read\n$/);
      await server.outputMatching(new RegExp(`"channel":"${channel}".*"client":"demo"`));
      const credentials = server.credentialsDocument as { clients: Record<string, { client_secret?: string }> };
      assertNoLeak(ran.stdout + ran.stderr, [credentials.clients.demo?.client_secret ?? 'no secret']);
    });

    it(`snippet ${index + 1} (${channel}) ends with a clear transport_error when the broker is unreachable`, async () => {
      const unreachable = `http://127.0.0.1:${await closedPort()}`;
      const env =
        channel === 'http'
          ? { ...shell, TOKEN_BROKER_URL: `${unreachable}/` }
          : { ...shell, AWS_ENDPOINT_URL_LAMBDA: unreachable };
      const ran = await runSnippet(index, env);
      assert.notEqual(ran.code, 0);
      const last = ran.stderr.trim().split('\n').at(-1) ?? '';
      assert.match(
        last,
        channel === 'http'
          ? /^(__main__\.)?TokenBrokerError: token broker: transport_error \(HTTP None\): cannot reach the broker at http:\/\/127\.0\.0\.1:\d+\/: .*[Cc]onnection refused/
          : /^(__main__\.)?TokenBrokerError: token broker: transport_error: lambda:Invoke failed: Could not connect to the endpoint URL/,
      );
    });
  }
});
