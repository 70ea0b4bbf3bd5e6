import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SingleFlight } from '../../lambdas/core/single-flight.js';
import { deferred } from '../support/fakes.js';

describe('SingleFlight', () => {
  it('runs the work once for concurrent callers of one key, and they all get its value', async () => {
    const flight = new SingleFlight<string, number>();
    const gate = deferred<number>();
    let runs = 0;
    const work = () => {
      runs += 1;
      return gate.promise;
    };
    const callers = [flight.run('a', work), flight.run('a', work), flight.run('a', work)];
    assert.equal(flight.has('a'), true);
    assert.equal(flight.pending('a'), callers[0]);
    assert.equal(flight.pending('b'), undefined);
    gate.resolve(7);
    assert.deepEqual(await Promise.all(callers), [7, 7, 7]);
    assert.equal(runs, 1);
  });

  it('runs different keys separately', async () => {
    const flight = new SingleFlight<string, string>();
    const values = await Promise.all([flight.run('a', async () => 'A'), flight.run('b', async () => 'B')]);
    assert.deepEqual(values, ['A', 'B']);
  });

  it('shares a failure with every waiting caller, then forgets it: the next caller runs again', async () => {
    const flight = new SingleFlight<string, number>();
    const gate = deferred<number>();
    let runs = 0;
    const failing = () => {
      runs += 1;
      return gate.promise;
    };
    const callers = [flight.run('a', failing), flight.run('a', failing)];
    gate.reject(new Error('provider down'));
    for (const caller of callers) await assert.rejects(caller, /provider down/);
    assert.equal(flight.has('a'), false);
    assert.equal(await flight.run('a', async () => 1), 1);
    assert.equal(runs, 1, 'the failed run was shared, not repeated');
  });

  it('keeps nothing after success either: a later caller runs the work again', async () => {
    const flight = new SingleFlight<string, number>();
    let runs = 0;
    const work = async () => ++runs;
    assert.equal(await flight.run('a', work), 1);
    assert.equal(await flight.run('a', work), 2);
  });
});
