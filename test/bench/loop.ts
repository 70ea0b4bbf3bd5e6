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
