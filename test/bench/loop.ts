import { type Distribution, distribution } from './stats.js';

/** One measured request: how long it took and what it came back as (a cache outcome, a status...). */
export interface Sample {
  ms: number;
  outcome: string;
}

export interface LoopResult {
  latency: Distribution;
  /** Outcome → number of measured requests. */
  outcomes: Record<string, number>;
  /** Measured requests whose outcome was not the expected one (they are still in the latency figures). */
  unexpected: number;
  /** The time limit ended the loop before `count` requests. */
  stoppedEarly: boolean;
  requested: number;
  warmup: number;
  wallMs: number;
}

export interface LoopOptions {
  count: number;
  warmup: number;
  /** Wall-clock limit for warm-up and measured requests together. */
  limitMs: number;
  expected: string;
}

/**
 * Sequential requests, one at a time: `warmup` unmeasured, then up to `count` measured, within `limitMs`.
 * `run` does its own untimed preparation and returns the time of the part that counts.
 */
export async function sequential(options: LoopOptions, run: (index: number) => Promise<Sample>): Promise<LoopResult> {
  const started = performance.now();
  const deadline = started + options.limitMs;
  for (let i = 0; i < options.warmup && performance.now() < deadline; i++) await run(i);
  const samples: number[] = [];
  const outcomes: Record<string, number> = {};
  let unexpected = 0;
  for (let i = 0; i < options.count && performance.now() < deadline; i++) {
    const sample = await run(options.warmup + i);
    samples.push(sample.ms);
    outcomes[sample.outcome] = (outcomes[sample.outcome] ?? 0) + 1;
    if (sample.outcome !== options.expected) unexpected += 1;
  }
  return {
    latency: distribution(samples),
    outcomes,
    unexpected,
    stoppedEarly: samples.length < options.count,
    requested: options.count,
    warmup: options.warmup,
    wallMs: performance.now() - started,
  };
}

/** "10,000 requests (1,000 warm-up first)", with what went wrong if anything did. */
export function describeLoop(result: LoopResult, noun = 'requests'): string {
  const parts = [`${result.latency.count.toLocaleString('en-US')} ${noun}`];
  if (result.warmup > 0) parts.push(`after ${result.warmup.toLocaleString('en-US')} warm-up`);
  parts.push(`${(result.wallMs / 1000).toFixed(1)} s`);
  let text = parts.join(', ');
  if (result.stoppedEarly) text += ` — STOPPED AT THE TIME LIMIT before ${result.requested.toLocaleString('en-US')}`;
  if (result.unexpected > 0) text += ` — ${result.unexpected} unexpected outcomes: ${JSON.stringify(result.outcomes)}`;
  return text;
}

export interface AlternatingOptions {
  rounds: number;
  /** Unmeasured rounds first. */
  warmupRounds: number;
  perRound: { a: number; b: number };
  /** Wall-clock limit for all rounds together. */
  limitMs: number;
  expected: { a: string; b: string };
}

/**
 * Two kinds of request measured in alternating blocks (a block of `a`, a block of `b`, round after round), so
 * that both see the same machine: on a shared machine speed drifts over seconds, and two loops run minutes apart
 * would compare the drift as much as the requests.
 */
export async function alternating(
  options: AlternatingOptions,
  runA: (index: number) => Promise<Sample>,
  runB: (index: number) => Promise<Sample>,
): Promise<{ a: LoopResult; b: LoopResult }> {
  const started = performance.now();
  const deadline = started + options.limitMs;
  const sides = {
    a: { run: runA, samples: [] as number[], outcomes: {} as Record<string, number>, unexpected: 0, done: 0 },
    b: { run: runB, samples: [] as number[], outcomes: {} as Record<string, number>, unexpected: 0, done: 0 },
  };
  const totalRounds = options.warmupRounds + options.rounds;
  for (let round = 0; round < totalRounds && performance.now() < deadline; round++) {
    const measured = round >= options.warmupRounds;
    for (const name of ['a', 'b'] as const) {
      const side = sides[name];
      for (let i = 0; i < options.perRound[name]; i++) {
        const sample = await side.run(side.done++);
        if (!measured) continue;
        side.samples.push(sample.ms);
        side.outcomes[sample.outcome] = (side.outcomes[sample.outcome] ?? 0) + 1;
        if (sample.outcome !== options.expected[name]) side.unexpected += 1;
      }
    }
  }
  const wallMs = performance.now() - started;
  const result = (name: 'a' | 'b'): LoopResult => {
    const side = sides[name];
    const requested = options.rounds * options.perRound[name];
    return {
      latency: distribution(side.samples),
      outcomes: side.outcomes,
      unexpected: side.unexpected,
      stoppedEarly: side.samples.length < requested,
      requested,
      warmup: options.warmupRounds * options.perRound[name],
      wallMs,
    };
  };
  return { a: result('a'), b: result('b') };
}
