/**
 * The stand-ins for node:http and node:https in the Lambda bundle (lambdas/bundle/) must offer what the modules
 * offer, minus only the getters they exist to avoid: a Node upgrade that adds an export shows up here.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as httpShim from '../../lambdas/bundle/node-http.js';
import * as httpsShim from '../../lambdas/bundle/node-https.js';

/** node:http's getters that load Node's undici, and an internal name nobody imports. */
const leftOut = new Set(['WebSocket', 'CloseEvent', 'MessageEvent', '_connectionListener']);

for (const [name, shim] of [
  ['node:http', httpShim],
  ['node:https', httpsShim],
] as const) {
  describe(`the bundle's ${name}`, () => {
    const builtinModule = process.getBuiltinModule(name) as unknown as Record<string, unknown>;
    const shimExports: Record<string, unknown> = shim;

    it('exports the module itself as its default', () => {
      assert.equal(shim.default, builtinModule);
    });

    it("exports every other name of the module, each the module's own value", () => {
      const expected = Object.keys(builtinModule).filter((key) => !leftOut.has(key));
      const exported = Object.keys(shimExports).filter((key) => key !== 'default');
      assert.deepEqual(exported.sort(), expected.sort());
      for (const key of exported) assert.equal(shimExports[key], builtinModule[key], key);
    });
  });
}
