/**
 * Section 3: 1,000 concurrent requests for a cold key, spread over 4 Node processes (Lambda containers,
 * test/support/container-worker.ts through runContainers) sharing one dynalite, released together.
 */
import { type ContainerRun, runContainers } from '../support/containers.js';
import { phaseCommand, print, tokenRequests } from './child.js';
import type { Figure } from './protocol.js';
import { count } from './stats.js';

export async function runBurst(): Promise<Figure[]> {
  const processes = 4;
  const requestsEach = 250;
  print(`burst: ${processes} processes × ${requestsEach} concurrent requests for a cold key...`);
  const before = await tokenRequests('main');
  const runs: ContainerRun[] = await runContainers({
    count: processes,
    requestsEach,
    client: 'burst',
    env: {},
    timeoutMs: 120_000,
  });
  const calls = (await tokenRequests('main')) - before;

  const statuses: Record<string, number> = {};
  const outcomes: Record<string, number> = {};
  const tokens = new Set<string>();
  for (const run of runs) {
    for (const [status, n] of Object.entries(run.statuses)) statuses[status] = (statuses[status] ?? 0) + n;
    for (const [outcome, n] of Object.entries(run.cache)) outcomes[outcome] = (outcomes[outcome] ?? 0) + n;
    for (const token of run.tokens) tokens.add(token);
  }
  const total = processes * requestsEach;
  const ok = statuses['200'] ?? 0;
  const slowest = Math.max(...runs.map((run) => run.elapsedMs));
  const perProcess = runs.map((run) => `${JSON.stringify(run.cache)} in ${run.elapsedMs} ms`).join('; ');

  return [
    {
      id: '3',
      title: `burst: ${count(total)} concurrent requests, cold key, ${processes} processes, one dynalite`,
      command:
        `${phaseCommand('burst')}  (${processes} × node --import tsx test/support/container-worker.ts ` +
        `--client burst --requests ${requestsEach}, released together)`,
      details: [
        `token-endpoint calls: ${calls}; answers: ${JSON.stringify(statuses)}; distinct tokens handed out: ${tokens.size}`,
        `outcomes: ${JSON.stringify(outcomes)}; slowest process answered all its requests in ${slowest} ms`,
        `per process: ${perProcess}`,
      ],
      summary: `${calls} token-endpoint call${calls === 1 ? '' : 's'}, ${count(ok)}/${count(total)} ok`,
      target: {
        text: 'exactly 1 token-endpoint call per key',
        pass: calls === 1 && ok === total && tokens.size === 1,
      },
      data: {
        requests: total,
        processes,
        tokenEndpointCalls: calls,
        statuses,
        outcomes,
        distinctTokens: tokens.size,
        slowestProcessMs: slowest,
        perProcess: runs.map((run) => ({ cache: run.cache, statuses: run.statuses, elapsedMs: run.elapsedMs })),
      },
    },
  ];
}
