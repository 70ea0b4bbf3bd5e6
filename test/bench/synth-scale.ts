/**
 * Synth cost by registry size (issue 11): `npx tsx test/bench/synth-scale.ts`.
 *
 * For 1, 50 and 200 clients, each with two fetching roles and one admin role of the deploying account (the
 * shape test/stack/scale.test.ts checks), prints the median of 3 synths (bundling skipped, validations on:
 * what `cdk synth` spends besides esbuild), the total size of the templates (the parent and its nested stacks)
 * and the resource count of the largest one (CloudFormation allows 500).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { parseTokenBrokerContext } from '../../lib/context.js';
import { TokenBrokerStack } from '../../lib/token-broker-stack.js';
import { cdkJson, env, teamRegistry } from '../stack/support.js';

const sizes = [1, 50, 200];
const runs = 3;

interface Run {
  ms: number;
  templateBytes: number;
  templates: number;
  largestResources: number;
}

function synthOnce(count: number): Run {
  const outdir = mkdtempSync(join(tmpdir(), 'token-broker-synth-scale-'));
  try {
    const tokenBroker = { clients: teamRegistry(count) };
    const started = performance.now();
    const app = new App({ outdir, context: { ...cdkJson.context, 'aws:cdk:bundling-stacks': [], tokenBroker } });
    new TokenBrokerStack(app, 'TokenBroker', {
      config: parseTokenBrokerContext(tokenBroker),
      env,
    });
    app.synth();
    const ms = performance.now() - started;
    const files = readdirSync(outdir).filter((file) => file.endsWith('.template.json'));
    let templateBytes = 0;
    let largestResources = 0;
    for (const file of files) {
      const text = readFileSync(join(outdir, file), 'utf8');
      templateBytes += Buffer.byteLength(text);
      const resources = Object.keys((JSON.parse(text) as { Resources?: object }).Resources ?? {}).length;
      largestResources = Math.max(largestResources, resources);
    }
    return { ms, templateBytes, templates: files.length, largestResources };
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN;

// One synth first, so that module loading and JIT warm-up fall on no size.
synthOnce(1);
console.log('clients  synth (median of 3)  templates  total template bytes  largest template: resources');
for (const size of sizes) {
  const results = Array.from({ length: runs }, () => synthOnce(size));
  const last = results.at(-1) as Run;
  console.log(
    [
      String(size).padStart(7),
      `${Math.round(median(results.map((r) => r.ms)))} ms`.padStart(20),
      String(last.templates).padStart(10),
      String(last.templateBytes).padStart(21),
      String(last.largestResources).padStart(28),
    ].join('  '),
  );
}
