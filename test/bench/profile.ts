/**
 * Where a cold start's CPU time goes, from a V8 CPU profile (--cpu-prof) of one cold-start process:
 * the inclusive time of a few frames that matter, as shares of all samples.
 */
import { readFile } from 'node:fs/promises';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
}

const phases: { label: string; matches: (frame: ProfileNode['callFrame']) => boolean }[] = [
  {
    label: 'compiling index.mjs',
    matches: (f) => f.functionName === 'compileSourceTextModule',
  },
  {
    // node:http's facade would load Node's undici (its WebSocket getters): lib/lambda-bundle.ts keeps it out.
    label: 'ESM facades of Node built-ins',
    matches: (f) => f.functionName === 'getESMFacade',
  },
  {
    label: 'reading the source map (--enable-source-maps)',
    matches: (f) => f.functionName === 'maybeCacheSourceMap',
  },
  {
    label: "loading Node's undici",
    matches: (f) => f.url === 'node:internal/deps/undici/undici',
  },
  {
    label: "evaluating the bundle's top level",
    matches: (f) => f.functionName === 'run' && f.url.endsWith('module_job'),
  },
  { label: 'garbage collection', matches: (f) => f.functionName === '(garbage collector)' },
];

/** "compiling index.mjs 41 ms (22 %), ..." over the whole process's samples. */
export async function summarizeColdStartProfile(path: string): Promise<{ text: string; ms: Record<string, number> }> {
  const profile = JSON.parse(await readFile(path, 'utf8')) as CpuProfile;
  const sampleMs = (profile.endTime - profile.startTime) / 1000 / Math.max(profile.samples.length, 1);
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const totals = phases.map(() => 0);
  for (const sample of profile.samples) {
    const hit = phases.map(() => false);
    for (let id: number | undefined = sample; id !== undefined; id = parent.get(id)) {
      const frame = byId.get(id)?.callFrame;
      if (frame === undefined) continue;
      phases.forEach((phase, i) => {
        if (phase.matches(frame)) hit[i] = true;
      });
    }
    hit.forEach((was, i) => {
      if (was) totals[i] = (totals[i] ?? 0) + sampleMs;
    });
  }
  const all = profile.samples.length * sampleMs;
  const ms: Record<string, number> = { 'whole process (profiled)': Math.round(all) };
  const parts = phases.map((phase, i) => {
    const value = totals[i] ?? 0;
    ms[phase.label] = Math.round(value * 10) / 10;
    return `${phase.label} ${Math.round(value)} ms (${Math.round((value / all) * 100)} %)`;
  });
  return {
    text: `CPU profile of one run (${Math.round(all)} ms sampled, profiler overhead included): ${parts.join('; ')}`,
    ms,
  };
}
