/**
 * Section 7 (issue 17): a fleet over an hour. Four containers share the table and one provider whose tokens
 * live 300 s, on the simulated clock of section 4 (one request to every container each simulated second).
 *
 * 7a and 7b count token-endpoint calls per client per hour in steady state, with the default settings and with
 * the renewal lead cut to 10 s. 7c and 7d take the provider down for a whole token lifetime, once starting
 * just after a renewal and once just before one, and count what warm keys saw: served, refused, and the calls
 * the fleet still sent the provider (its shared cooldown).
 */
import {
  defaultRefreshAheadFraction,
  defaultRefreshAheadMaxSeconds,
  renewalLeadMs,
} from '../../lambdas/core/broker.js';
import { environmentVariables } from '../../lambdas/entry/environment.js';
import { phaseCommand, print, scaled } from './child.js';
import { runScenario, type Scenario, type ScenarioRun } from './phase-steady.js';
import type { Figure } from './protocol.js';
import { count, percent } from './stats.js';

const lifetimeS = 300;
const hourS = 3600;
const common = {
  oidc: 'fleet',
  lifetimeS,
  windowS: 60,
  tickMs: 1_000,
  containers: 4,
} as const satisfies Partial<Scenario>;

function perHour(run: ScenarioRun): number {
  return (run.calls * hourS) / Math.max(run.simulatedS, 1);
}

/** Requests that waited on the token endpoint (the renewing caller, and others awaiting its delivery). */
function waitedShare(run: ScenarioRun): string {
  return `${count(run.waitedRequests.length)} of ${count(run.requests.length)} = ${percent(run.waitedRequests.length / Math.max(run.requests.length, 1))}`;
}

function steadyFigure(id: string, title: string, run: ScenarioRun, settings: string): Figure {
  const calls = perHour(run);
  return {
    id,
    title,
    command: phaseCommand('fleet'),
    details: [
      `SIMULATED: ${count(Math.round(run.simulatedS))} s in ${run.realS.toFixed(1)} s real, ${run.rate} requests per simulated second across ${run.scenario.containers} containers sharing the table; ${settings}`,
      `a 300 s token is renewed ${run.ahead} s before it expires, every ~${run.period} s: ${run.calls} token-endpoint calls = ${calls.toFixed(1)} per client per hour ` +
        `(one per lifetime would be ${hourS / lifetimeS}); ${run.duplicated} renewals with more than one call, ${run.early} early; ${run.failed.length} requests failed`,
      `waited on the token endpoint: ${waitedShare(run)}; outcomes ${JSON.stringify(run.outcomes)}`,
    ],
    summary: `${calls.toFixed(1)} calls/client/hour, ${percent(run.waitedRequests.length / Math.max(run.requests.length, 1))} waited`,
    target: {
      text: '12 calls per client per hour with 0 requests waiting',
      pass: Math.round(calls) <= 12 && run.waitedRequests.length === 0,
    },
    data: {
      simulated: true,
      simulatedSeconds: Math.round(run.simulatedS),
      containers: run.scenario.containers,
      tokenEndpointCalls: run.calls,
      callsPerClientPerHour: calls,
      renewAheadSeconds: run.ahead,
      renewals: run.renewals,
      renewalsWithMoreThanOneCall: run.duplicated,
      requests: run.requests.length,
      waited: run.waitedRequests.length,
      failed: run.failed.length,
      outcomes: run.outcomes,
    },
  };
}

function outageFigure(id: string, title: string, run: ScenarioRun): Figure {
  const outage = run.scenario.outage as { fromS: number; toS: number };
  const during = run.requests.filter((r) => r.at >= outage.fromS && r.at < outage.toS);
  const failedDuring = during.filter((r) => r.status !== 200);
  const failedAfter = run.requests.filter((r) => r.at >= outage.toS && r.status !== 200);
  const statuses: Record<string, number> = {};
  for (const r of failedDuring) statuses[r.status] = (statuses[r.status] ?? 0) + 1;
  const first = failedDuring[0]?.at;
  const last = failedDuring.at(-1)?.at;
  const staleServed = during.filter((r) => r.outcome === 'stale-served').length;
  const outageS = outage.toS - outage.fromS;
  return {
    id,
    title,
    command: phaseCommand('fleet'),
    details: [
      `SIMULATED: ${count(Math.round(run.simulatedS))} s in ${run.realS.toFixed(1)} s real, ${run.rate} requests per simulated second across ${run.scenario.containers} warm containers; ` +
        `every token request gets 503 from ${outage.fromS} s to ${outage.toS} s (${outageS} s, one token lifetime)`,
      `during the outage: ${count(during.length)} requests, ${count(during.length - failedDuring.length)} served (${staleServed} of them stale-served: the current token while renewal could not happen), ` +
        `${count(failedDuring.length)} refused ${JSON.stringify(statuses)}` +
        (first === undefined
          ? ''
          : `, from ${first - outage.fromS} s to ${(last ?? first) - outage.fromS} s into the outage`),
      `token requests the fleet still sent the failing provider: ${run.refusedCalls} in ${outageS} s (each failure pauses every container: the shared cooldown); after the outage, ${failedAfter.length} requests failed`,
    ],
    summary: `${count(failedDuring.length)} of ${count(during.length)} refused during a ${outageS} s outage; ${run.refusedCalls} calls to the failing provider`,
    target: {
      text: 'warm keys see zero failures during an outage of one token lifetime',
      pass: failedDuring.length === 0,
    },
    data: {
      simulated: true,
      outageFromSeconds: outage.fromS,
      outageToSeconds: outage.toS,
      requestsDuringOutage: during.length,
      failedDuringOutage: failedDuring.length,
      staleServedDuringOutage: staleServed,
      firstFailureIntoOutageSeconds: first === undefined ? null : first - outage.fromS,
      lastFailureIntoOutageSeconds: last === undefined ? null : last - outage.fromS,
      callsToFailingProvider: run.refusedCalls,
      failedAfterOutage: failedAfter.length,
      statuses,
    },
  };
}

export async function runFleet(): Promise<Figure[]> {
  const limitMs = scaled(180_000, 20_000);
  const figures: Figure[] = [];
  const hours = scaled(1, 0.25);
  print('fleet: 300 s tokens, 4 containers, defaults (simulated hour)...');
  const defaults = await runScenario({
    ...common,
    client: 'fleet-defaults',
    lifetimes: (hours * hourS) / lifetimeS,
    limitMs,
  });
  figures.push(
    steadyFigure('7a', 'fleet: 300 s tokens, 4 containers, one hour, default settings', defaults, 'default settings'),
  );
  print('fleet: 300 s tokens, renewal lead cut to 10 s (simulated hour)...');
  const tuned = await runScenario({
    ...common,
    client: 'fleet-tuned',
    windowS: 10,
    env: { [environmentVariables.refreshAheadMaxSeconds]: '10' },
    lifetimes: (hours * hourS) / lifetimeS,
    limitMs,
  });
  figures.push(
    steadyFigure(
      '7b',
      'fleet: 300 s tokens, 4 containers, one hour, renewal 10 s before expiry',
      tuned,
      'refreshWindowSeconds 10, refreshAheadMaxSeconds 10',
    ),
  );
  // The first token is fetched at 0 s and renewed `period` seconds later, by the broker's own rule.
  const period =
    lifetimeS -
    renewalLeadMs(lifetimeS * 1000, {
      refreshWindowSeconds: common.windowS,
      refreshAheadFraction: defaultRefreshAheadFraction,
      refreshAheadMaxMs: defaultRefreshAheadMaxSeconds * 1000,
    }) /
      1000;
  for (const [id, client, fromS, when] of [
    ['7c', 'fleet-outage-early', period + 2, 'just after a renewal'],
    ['7d', 'fleet-outage-late', period - 5, 'just before a renewal'],
  ] as const) {
    print(`fleet: the provider down for one token lifetime, starting ${when} (simulated)...`);
    const run = await runScenario({
      ...common,
      client,
      lifetimes: 3,
      outage: { fromS, toS: fromS + lifetimeS },
      limitMs,
    });
    figures.push(outageFigure(id, `fleet: provider down for one 300 s token lifetime, starting ${when}`, run));
  }
  return figures;
}
