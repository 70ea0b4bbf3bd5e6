/**
 * The stand-in for node:http in the Lambda bundle (lambdas/bundle/node-http.ts) must offer what the module offers,
 * minus only the getters it exists to avoid: a Node upgrade that adds an export shows up here.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import * as httpShim from '../../lambdas/bundle/node-http.js';

/** In a fresh process: is Node's undici loaded after importing the stand-in, and after importing node:http? */
const loadCheck = `
const undiciLoaded = () => process.moduleLoadList.some((name) => name.includes('undici'));
await import(${JSON.stringify(new URL('../../lambdas/bundle/node-http.ts', import.meta.url).href)});
const viaStandIn = undiciLoaded();
await import('node:http');
console.log(JSON.stringify({ viaStandIn, viaImport: undiciLoaded() }));
`;

/** node:http's getters that load Node's undici, and an internal name nobody imports. */
const leftOut = new Set(['WebSocket', 'CloseEvent', 'MessageEvent', '_connectionListener']);

describe("the bundle's node:http", () => {
  const builtinModule = process.getBuiltinModule('node:http') as unknown as Record<string, unknown>;
  const shimExports: Record<string, unknown> = httpShim;

  it('exports the module itself as its default', () => {
    assert.equal(httpShim.default, builtinModule);
  });

  it("exports every other name of the module, each the module's own value", () => {
    const expected = Object.keys(builtinModule).filter((key) => !leftOut.has(key));
    const exported = Object.keys(shimExports).filter((key) => key !== 'default');
    assert.deepEqual(exported.sort(), expected.sort());
    for (const key of exported) assert.equal(shimExports[key], builtinModule[key], key);
  });

  it("does not load Node's undici, where importing node:http as an ES module does", () => {
    const loaded = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', loadCheck], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(loaded.status, 0, loaded.stderr);
    assert.deepEqual(JSON.parse(loaded.stdout), { viaStandIn: false, viaImport: true });
  });
});
