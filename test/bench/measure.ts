/**
 * The measuring process of `npm run bench` (started by test/bench/run-bench.ts with NODE_EXTRA_CA_CERTS set,
 * its stdout on /dev/null): it plays the Lambda container and reports each figure to the entry process.
 */
import { done, emit, print, setup } from './child.js';
import { runBurst } from './phase-burst.js';
import { runColdStart } from './phase-cold-start.js';
import { runFleet } from './phase-fleet.js';
import { runHttp } from './phase-http.js';
import { runInProcess } from './phase-inproc.js';
import { runSteady } from './phase-steady.js';
import { killTracked } from './processes.js';
import type { Figure, Phase } from './protocol.js';

const runners: Record<Phase, () => Promise<Figure[]>> = {
  inproc: async () => (await runInProcess()).figures,
  http: runHttp,
  burst: runBurst,
  steady: runSteady,
  fleet: runFleet,
  cold: runColdStart,
};

/** Figures are measured in the order the measurements need (misses store what 1c reads) and shown in issue order. */
const order = ['1a', '1r', '1b', '1c', '1d', '6b', '2', '6a'];
function displayOrder(id: string): number {
  const index = order.indexOf(id);
  return index === -1 ? order.length : index;
}

async function main(): Promise<void> {
  for (const phase of setup.phases) {
    const started = performance.now();
    const figures = await runners[phase]();
    figures.sort((a, b) => displayOrder(a.id) - displayOrder(b.id));
    for (const figure of figures) emit(figure);
    print(`(${phase}: ${((performance.now() - started) / 1000).toFixed(1)} s)`);
  }
}

// SDK clients keep sockets open: the process leaves once the channel has taken the last message.
main().then(
  async () => {
    await done();
    process.exit(0);
  },
  (error: unknown) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
// Interrupted, or the entry process went away: stop measuring, and stop what this process started.
const stop = () => {
  killTracked();
  process.exit(1);
};
process.on('disconnect', stop);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
