/**
 * The Python package's own suite (packages/python/tests), run as its developers run it: `python3 -m unittest`
 * in packages/python. Its tests start `npm start`'s dev server themselves and talk to it over loopback. The
 * interpreter is the first python3 that imports botocore, requests and httpx (Debian's packages live in
 * /usr/bin/python3's dist-packages, which a pyenv python3 does not see); without one the suite is skipped
 * loudly, and under CI, where .ci/run installs them, it fails instead, as it does if any test skips.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const packageDir = fileURLToPath(new URL('../../packages/python', import.meta.url));

async function findPython(): Promise<string | undefined> {
  for (const candidate of ['/usr/bin/python3', 'python3']) {
    try {
      await run(candidate, ['-c', 'import botocore, requests, httpx']);
      return candidate;
    } catch {
      // the next candidate
    }
  }
  return undefined;
}

const python = await findPython();
const missing = 'no python3 that imports botocore, requests and httpx (apt-get install python3-boto3 python3-httpx)';
if (python === undefined) {
  if (process.env.CI) throw new Error(`packages/python: ${missing}; .ci/run should have installed them`);
  process.stderr.write(`\n*** SKIPPING packages/python's tests: ${missing} ***\n\n`);
}

describe('packages/python: python3 -m unittest', { skip: python === undefined }, () => {
  it('passes every test of the package, none skipped under CI', async () => {
    let output: string;
    try {
      const { stderr } = await run(python ?? 'python3', ['-W', 'error::ResourceWarning', '-m', 'unittest', '-v'], {
        cwd: packageDir,
        // The dev server the tests start runs on this Node.
        env: { ...process.env, NODE: process.execPath },
        timeout: 240_000,
        maxBuffer: 16 * 1024 * 1024,
      });
      output = stderr;
    } catch (error) {
      const failed = error as { stdout?: string; stderr?: string };
      assert.fail(`python3 -m unittest failed:\n${failed.stderr ?? ''}${failed.stdout ?? ''}`);
    }
    const ran = Number(/^Ran (\d+) tests? in/m.exec(output)?.[1]);
    assert.ok(ran >= 35, `ran ${ran} tests:\n${output}`);
    assert.match(output, /^OK/m);
    if (process.env.CI) assert.doesNotMatch(output, /skipped/, output);
  });
});
