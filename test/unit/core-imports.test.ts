import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import ts from 'typescript';

const coreDir = new URL('../../lambdas/core/', import.meta.url);
const modules = readdirSync(coreDir).filter((name) => name.endsWith('.ts'));

/** The specifiers a module imports or re-exports from, types included. */
function importsOf(name: string): string[] {
  const source = readFileSync(new URL(name, coreDir), 'utf8');
  return ts.preProcessFile(source, true, true).importedFiles.map((file) => file.fileName);
}

/** The core modules a module imports, by file name. */
function coreImportsOf(name: string): string[] {
  return importsOf(name)
    .filter((specifier) => specifier.startsWith('./'))
    .map((specifier) => specifier.slice(2).replace(/\.js$/, '.ts'));
}

/** Every import cycle among the core's modules, each named by its modules in order from the smallest name. */
function cycles(): string[] {
  const found = new Set<string>();
  const visit = (name: string, path: string[]) => {
    const at = path.indexOf(name);
    if (at >= 0) {
      const cycle = path.slice(at);
      const start = cycle.indexOf([...cycle].sort()[0] ?? name);
      found.add([...cycle.slice(start), ...cycle.slice(0, start)].join(' -> '));
      return;
    }
    for (const next of coreImportsOf(name)) visit(next, [...path, name]);
  };
  for (const name of modules) visit(name, []);
  return [...found].sort();
}

/**
 * Cycles another change of issue 18 owns: ports.ts takes ClientConfig from config.ts, which takes the assertion
 * algorithms from ports.ts. Listed so that this test guards against new ones meanwhile; delete once it is gone.
 */
const cyclesOwnedElsewhere: string[] = [];

describe('the core modules', () => {
  it('keep config and scope apart: neither imports the other', () => {
    assert.equal(coreImportsOf('scope.ts').includes('config.ts'), false);
    assert.equal(
      cycles().some((cycle) => cycle.split(' -> ').includes('scope.ts')),
      false,
    );
  });

  it('import one another without a cycle', () => {
    assert.deepEqual(
      cycles().filter((cycle) => !cyclesOwnedElsewhere.includes(cycle)),
      [],
    );
  });

  it('import no AWS SDK and no HTTP library: only Node built-ins, each other and the contract', () => {
    const outside = modules.flatMap((name) =>
      importsOf(name)
        .filter((specifier) => !specifier.startsWith('./') && !specifier.startsWith('node:'))
        .filter((specifier) => specifier !== '../contract.js' && specifier !== 'jsonc-parser')
        .map((specifier) => `${name}: ${specifier}`),
    );
    assert.deepEqual(outside, []);
  });
});
