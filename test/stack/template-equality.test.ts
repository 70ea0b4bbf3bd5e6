import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { normalizedTemplates, templateFixtures } from './fixtures/normalized-synth.js';

/*
 * Issue 18: the construct may be reorganised freely, but what it deploys is a contract. Each registry's templates,
 * asset hashes masked, must equal the kept ones under fixtures/templates/. When a change is meant to alter the
 * infrastructure, rewrite them (`npx tsx test/stack/fixtures/write-templates.ts`) and review the diff as the change.
 */

/** The first line where the two texts part, with a few lines around it: enough to see what moved. */
function firstDifference(expected: string, actual: string): string {
  const want = expected.split('\n');
  const got = actual.split('\n');
  const at = want.findIndex((line, index) => line !== got[index]);
  const line = at === -1 ? want.length : at;
  const around = (lines: string[]) => lines.slice(Math.max(0, line - 4), line + 4).join('\n');
  return `templates differ from line ${line + 1}:\n--- kept\n${around(want)}\n--- synthesized\n${around(got)}`;
}

describe('the synthesized templates are the kept ones (asset hashes masked)', () => {
  for (const [name, registry] of Object.entries(templateFixtures)) {
    it(`${name}: synthesizes the same parent and nested templates`, () => {
      const kept = readFileSync(new URL(`./fixtures/templates/${name}.json`, import.meta.url), 'utf8');
      const synthesized = normalizedTemplates(registry());
      if (synthesized !== kept) assert.fail(firstDifference(kept, synthesized));
    });
  }
});
