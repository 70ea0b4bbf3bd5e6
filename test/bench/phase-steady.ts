/**
 * Section 4: a steady run with short-lived tokens over several lifetimes at constant load, on a simulated
 * clock. Four containers (brokers in this process, each with its own memory, SDK clients and single flight)
 * share the table and one identity provider whose tokens live `lifetime` seconds. Simulated time advances
 * in ticks; each tick sends one request to every container, all at once (a Lambda container serves one
 * request at a time), so the load is constant in simulated time. Within a tick real time passes as usual (the clock is real time plus an
 * offset that only grows), so leases, polling and timeouts behave as they do in production.
 */
import {
  type CacheOutcome,
  defaultRefreshAheadFraction,
  defaultRefreshAheadMaxSeconds,
  renewalLeadMs,
} from '../../lambdas/core/broker.js';
import type { Clock } from '../../lambdas/core/ports.js';
import { environmentVariables } from '../../lambdas/entry/environment.js';
import { startFaultProxy } from '../support/fault-proxy.js';
import { phaseCommand, print, scaled, setup, tokenEvent, tokenRequests } from './child.js';
import { type Container, newContainer } from './container.js';
import type { Figure, OidcName } from './protocol.js';
import { count, distribution, percent, spread } from './stats.js';

export interface Scenario {
  client: string;
  oidc: OidcName;
  lifetimeS: number;
  windowS: number;
  lifetimes: number;
  tickMs: number;
  containers: number;
  limitMs: number;
  /** Settings beside the window, as the function's environment carries them. */
  env?: Record<string, string>;
  /** Simulated seconds (from the start) during which every token request gets a 503 from a proxy in front. */
  outage?: { fromS: number; toS: number };
}

/** What one run measured, before it becomes a figure. */
export interface ScenarioRun {
  scenario: Scenario;
  simulatedS: number;
  realS: number;
  lifetimesRun: number;
  rate: number;
  ahead: number;
  period: number;
  requests: Request[];
  waitedRequests: Request[];
  failed: Request[];
  /** Token requests that reached the provider, and (with an outage) those the proxy refused. */
  calls: number;
  refusedCalls: number;
  renewals: number;
  duplicated: number;
  early: number;
  minGap: number;
  tokens: Set<string>;
  outcomes: Record<string, number>;
  stoppedEarly: boolean;
}

/** Real time plus an offset that only grows: simulated time never runs backwards. */
class SimulatedClock {
  private offset = 0;
  now(): number {
    return Date.now() + this.offset;
  }
  /** Simulated time becomes at least `at`. */
  moveTo(at: number): void {
    const offset = at - Date.now();
    if (offset > this.offset) this.offset = offset;
  }
}

interface Request {
  tick: number;
  /** Simulated seconds since the start. */
  at: number;
  container: number;
  ms: number;
  status: number;
  outcome: CacheOutcome | undefined;
  token: string | undefined;
}

export async function runScenario(scenario: Scenario): Promise<ScenarioRun> {
  const clock = new SimulatedClock();
  /** Per container: the ticks in which it slept (only awaiting another container's delivery, or a retry backoff, sleeps). */
  const slept = Array.from({ length: scenario.containers }, () => new Set<number>());
  let tick = 0;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    [environmentVariables.refreshWindowSeconds]: String(scenario.windowS),
    ...scenario.env,
  };
  // An outage is a proxy in front of the provider that answers 503 while it lasts: the client goes through it.
  const proxy = scenario.outage === undefined ? undefined : await startFaultProxy(setup.oidc[scenario.oidc]);
  if (proxy !== undefined) {
    const registry = { ...setup.registry };
    const entry = registry[scenario.client];
    if (entry === undefined) throw new Error(`no registry entry ${scenario.client}`);
    registry[scenario.client] = {
      ...entry,
      wellKnownUrl: proxy.wellKnownUrl,
      tokenEndpointHosts: [new URL(proxy.tokenEndpoint).host],
    };
    env[environmentVariables.clients] = JSON.stringify(registry);
  }
  const containers: Container[] = slept.map((sleptTicks) => {
    const containerClock: Clock = {
      now: () => clock.now(),
      sleep: (ms) => {
        sleptTicks.add(tick);
        return new Promise((resolve) => setTimeout(resolve, ms));
      },
    };
    return newContainer({ env, clock: containerClock });
  });

  // The broker's own rule, so that the figure states what the code does.
  const ahead =
    renewalLeadMs(scenario.lifetimeS * 1000, {
      refreshWindowSeconds: scenario.windowS,
      refreshAheadFraction: defaultRefreshAheadFraction,
      refreshAheadMaxMs:
        Number(scenario.env?.[environmentVariables.refreshAheadMaxSeconds] ?? defaultRefreshAheadMaxSeconds) * 1000,
    }) / 1000;
  const period = scenario.lifetimeS - ahead;
  const durationMs = scenario.lifetimes * scenario.lifetimeS * 1000;
  const ticks = Math.ceil(durationMs / scenario.tickMs);
  const start = clock.now();
  const realStart = performance.now();
  const requests: Request[] = [];
  const callTicks: { tick: number; calls: number; at: number }[] = [];
  let stoppedEarly = false;
  const event = tokenEvent(scenario.client);

  for (tick = 0; tick < ticks; tick++) {
    if (performance.now() - realStart > scenario.limitMs) {
      stoppedEarly = true;
      break;
    }
    clock.moveTo(start + tick * scenario.tickMs);
    const at = (tick * scenario.tickMs) / 1000;
    if (proxy !== undefined && scenario.outage !== undefined) {
      const down = at >= scenario.outage.fromS && at < scenario.outage.toS;
      proxy.always('token', down ? { status: 503, body: { error: 'temporarily_unavailable' } } : 'pass');
    }
    const before = await tokenRequests(scenario.oidc);
    const answers = await Promise.all(
      containers.map(async (each, container) => ({ answer: await each.request(event), container })),
    );
    for (const { answer, container } of answers) {
      requests.push({
        tick,
        at,
        container,
        ms: answer.elapsedMs,
        status: answer.status,
        outcome: answer.outcome,
        token: answer.accessToken,
      });
    }
    const calls = (await tokenRequests(scenario.oidc)) - before;
    if (calls > 0) callTicks.push({ tick, calls, at: (clock.now() - start) / 1000 });
  }
  const simulatedS = (clock.now() - start) / 1000;
  const refusedCalls = proxy === undefined ? 0 : proxy.received('token') - proxy.forwarded('token');
  await proxy?.close();

  const waited = (r: Request) =>
    r.outcome === 'fetched' ||
    r.outcome === 'refreshed' ||
    r.outcome === 'stale-served' ||
    (r.outcome === 'table' && slept[r.container]?.has(r.tick) === true);
  const callsMade = callTicks.reduce((sum, t) => sum + t.calls, 0);
  const gaps = callTicks.slice(1).map((t, i) => t.at - (callTicks[i]?.at ?? 0));
  const outcomes: Record<string, number> = {};
  for (const r of requests) outcomes[r.outcome ?? 'error'] = (outcomes[r.outcome ?? 'error'] ?? 0) + 1;
  return {
    scenario,
    simulatedS,
    realS: (performance.now() - realStart) / 1000,
    lifetimesRun: simulatedS / scenario.lifetimeS,
    rate: (scenario.containers * 1000) / scenario.tickMs,
    ahead,
    period,
    requests,
    waitedRequests: requests.filter(waited),
    failed: requests.filter((r) => r.status !== 200),
    calls: callsMade,
    refusedCalls,
    renewals: callTicks.length,
    duplicated: callTicks.filter((t) => t.calls > 1).length,
    early: gaps.filter((gap) => gap < period - scenario.tickMs / 1000).length,
    minGap: gaps.length === 0 ? Number.NaN : Math.min(...gaps),
    tokens: new Set(requests.flatMap((r) => (r.token === undefined ? [] : [r.token]))),
    outcomes,
    stoppedEarly,
  };
}

function steadyFigure(run: ScenarioRun): Figure {
  const { scenario, simulatedS, lifetimesRun, rate, ahead, period, requests, waitedRequests, stoppedEarly } = run;
  const { calls, renewals, duplicated, early, minGap, tokens, outcomes } = run;
  const failed = run.failed.length;
  const latency = distribution(requests.map((r) => r.ms));
  const waitedLatency = distribution(waitedRequests.map((r) => r.ms));
  const pass = duplicated === 0 && early === 0 && tokens.size === calls && failed === 0 && !stoppedEarly;

  return {
    id: scenario.lifetimeS === 70 ? '4a' : '4b',
    title: `steady run: ${scenario.lifetimeS} s tokens, ${scenario.windowS} s window, simulated clock`,
    command: phaseCommand('steady'),
    details: [
      `SIMULATED TIME: ${count(Math.round(simulatedS))} s (${lifetimesRun.toFixed(1)} lifetimes) in ${run.realS.toFixed(1)} s real; ` +
        `constant load of ${rate} requests per simulated second (one to each of ${scenario.containers} containers sharing the table, all at once, every ${scenario.tickMs / 1000} s)` +
        (stoppedEarly ? ' — STOPPED AT THE TIME LIMIT' : ''),
      `a token is renewed ${ahead} s before expiry (the larger of the refresh-ahead share and the window, a quarter of the lifetime at most), so every ~${period} s: ` +
        `${renewals} renewals, ${calls} token-endpoint calls = ${(calls / Math.max(renewals, 1)).toFixed(2)} per renewal, ` +
        `${(calls / lifetimesRun).toFixed(2)} per ${scenario.lifetimeS} s lifetime; ${duplicated} renewals with more than one call, ` +
        `${early} earlier than due (shortest gap ${Number.isFinite(minGap) ? `${minGap.toFixed(1)} s` : 'n/a'}); distinct tokens served ${tokens.size}`,
      `requests: ${count(requests.length)}, ${failed} failed; waited on the token endpoint: ${count(waitedRequests.length)} = ${percent(waitedRequests.length / Math.max(requests.length, 1))}` +
        ` (the renewing caller, and callers in other containers awaiting its delivery)`,
      `latency (real): all ${spread(latency)}; those that waited ${spread(waitedLatency)}; outcomes ${JSON.stringify(outcomes)}`,
    ],
    summary: `${(calls / Math.max(renewals, 1)).toFixed(2)} call/renewal, ${(calls / lifetimesRun).toFixed(2)}/lifetime, ${percent(waitedRequests.length / Math.max(requests.length, 1))} waited`,
    target: { text: 'exactly 1 token-endpoint call per key per token lifetime (renewal)', pass },
    data: {
      simulated: true,
      lifetimeSeconds: scenario.lifetimeS,
      windowSeconds: scenario.windowS,
      renewAheadSeconds: ahead,
      simulatedSeconds: Math.round(simulatedS),
      lifetimes: Math.round(lifetimesRun * 100) / 100,
      containers: scenario.containers,
      requestsPerSimulatedSecond: rate,
      requests: requests.length,
      failed,
      tokenEndpointCalls: calls,
      renewals,
      callsPerRenewal: calls / Math.max(renewals, 1),
      callsPerLifetime: calls / lifetimesRun,
      renewalsWithMoreThanOneCall: duplicated,
      earlyRenewals: early,
      distinctTokens: tokens.size,
      waited: waitedRequests.length,
      waitedShare: waitedRequests.length / Math.max(requests.length, 1),
      outcomes,
      latencyP99Ms: latency.p99,
      waitedLatencyP50Ms: waitedLatency.p50,
      stoppedEarly,
    },
  };
}

export async function runSteady(): Promise<Figure[]> {
  const figures: Figure[] = [];
  const common = { windowS: 60, containers: 4, limitMs: scaled(120_000, 20_000) };
  print('steady: 70 s tokens, 60 s window (simulated clock)...');
  figures.push(
    steadyFigure(
      await runScenario({
        ...common,
        client: 'steady-short',
        oidc: 'short',
        lifetimeS: 70,
        lifetimes: scaled(6, 2),
        tickMs: 500,
      }),
    ),
  );
  print('steady: 600 s tokens, 60 s window: refresh ahead (simulated clock)...');
  figures.push(
    steadyFigure(
      await runScenario({
        ...common,
        client: 'steady-long',
        oidc: 'long',
        lifetimeS: 600,
        lifetimes: scaled(5, 2),
        tickMs: 1_000,
      }),
    ),
  );
  return figures;
}
