import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  adminAliasOf,
  adminAliasSuffix,
  apiGatewayAliasName,
  cacheKeyOf,
  cacheKeyPrefixOf,
  clientAliasOf,
  environmentVariables,
  errorStatus,
  runtimeSettingNames,
  runtimeSettings,
} from '../../lambdas/contract.js';
import { clientNamePattern } from '../../lambdas/core/config.js';
import {
  functionEnvironmentOf,
  parseTokenBrokerSettings,
  runtimeSettingsOfEnvironment,
  runtimeSettingValuesOf,
  settingNames,
} from '../../lambdas/core/settings.js';
import { createBrokerFromEnvironment } from '../../lambdas/entry/compose.js';
import { applyRuntimeSettings } from '../../lambdas/local/embedded-clients.js';
import { problemsThrownBy } from '../support/config-problems.js';
import { RecordingLogger } from '../support/fakes.js';

const clients = {
  bwell: {
    wellKnownUrl: 'https://issuer.example/.well-known/openid-configuration',
    secretName: 'token-broker/bwell',
    scopes: ['system/*.read'],
  },
};
const sealingSecretArn = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:token-broker/sealing-key-AbCdEf';

const problemsOf = problemsThrownBy;

/** The function's cold start on an environment that lacks nothing but what `variables` adds. */
function coldStart(variables: Record<string, string>): void {
  createBrokerFromEnvironment(
    {
      [environmentVariables.clients]: JSON.stringify(clients),
      [environmentVariables.tableName]: 'tokens',
      [environmentVariables.sealingSecretArn]: sealingSecretArn,
      ...variables,
    },
    { logger: new RecordingLogger() },
  );
}

describe('every runtime setting of the contract is parsed, handed to the function and read, from its one row', () => {
  // That the construct takes every setting as a prop is test/stack/settings.test.ts's (it compiles against lib/).
  it('every setting has its own variable and is a tokenBroker field', () => {
    const variables = Object.values(environmentVariables);
    assert.equal(new Set(variables).size, variables.length, 'no two settings share a variable');
    for (const name of runtimeSettingNames) {
      assert.equal(environmentVariables[name], runtimeSettings[name].environmentVariable, name);
      assert.ok(settingNames.includes(name), `${name} is a tokenBroker field`);
    }
  });

  for (const name of runtimeSettingNames) {
    const { environmentVariable: variable, minimum, maximum, unit, default: fallback } = runtimeSettings[name];
    const refusal = `must be a whole number of ${unit} from ${minimum} to ${maximum}`;

    it(`${name}: cdk.json takes it within its bounds and refuses it outside them`, () => {
      assert.ok(minimum <= fallback && fallback <= maximum, 'its default is within its bounds');
      for (const value of [minimum, fallback]) {
        assert.equal(parseTokenBrokerSettings({ clients, [name]: value })[name], value);
      }
      for (const value of [minimum - 1, maximum + 1, minimum + 0.5, String(fallback), null]) {
        assert.deepEqual(
          problemsOf(() => parseTokenBrokerSettings({ clients, [name]: value })),
          [`tokenBroker.${name}: ${refusal}`],
        );
      }
    });

    it(`${name}: the function reads it from ${variable}, and its default when that is unset or empty`, () => {
      for (const env of [{}, { [variable]: '' }]) {
        const problems: string[] = [];
        assert.equal(runtimeSettingsOfEnvironment(env, problems)[name], fallback);
        assert.deepEqual(problems, []);
      }
      const problems: string[] = [];
      assert.equal(runtimeSettingsOfEnvironment({ [variable]: String(minimum) }, problems)[name], minimum);
      assert.deepEqual(problems, []);
    });

    it(`${name}: the cold start refuses ${variable} out of bounds, naming the variable and its text`, () => {
      for (const text of [String(maximum + 1), ' 1', '1.5', 'sixty']) {
        assert.deepEqual(
          problemsOf(() => coldStart({ [variable]: text })),
          [`${variable}: ${refusal}, got ${JSON.stringify(text)}`],
        );
      }
      assert.doesNotThrow(() => coldStart({ [variable]: String(minimum) }));
    });

    it(`${name}: what the stack sets is what the function reads back`, () => {
      assert.deepEqual(functionEnvironmentOf({ [name]: minimum }), { [variable]: String(minimum) });
      const problems: string[] = [];
      assert.equal(runtimeSettingsOfEnvironment(functionEnvironmentOf({ [name]: minimum }), problems)[name], minimum);
      assert.deepEqual(problems, []);
    });
  }

  it('the runtime settings of the whole settings are each one given, and no other field', () => {
    const settings = parseTokenBrokerSettings({
      clients,
      stage: 'v2',
      refreshWindowSeconds: 90,
      secretMaxAgeSeconds: 0,
    });
    assert.deepEqual(runtimeSettingValuesOf(settings), { refreshWindowSeconds: 90, secretMaxAgeSeconds: 0 });
  });

  it('the function environment leaves out every setting not given, so that its defaults apply', () => {
    assert.deepEqual(functionEnvironmentOf({}), {});
  });

  it('the function environment carries the approved token endpoint hosts comma-separated', () => {
    assert.deepEqual(
      functionEnvironmentOf({ upstreamBudgetMs: 3000, tokenEndpointHosts: ['a.example', '*.b.example'] }),
      {
        [environmentVariables.upstreamBudgetMs]: '3000',
        [environmentVariables.tokenEndpointHosts]: 'a.example,*.b.example',
      },
    );
  });

  it('the local server sets the same environment, a variable set already winning', () => {
    const env: NodeJS.ProcessEnv = { [environmentVariables.refreshWindowSeconds]: '90' };
    const settings = { clients, refreshWindowSeconds: 120, secretMaxAgeSeconds: 0, tokenEndpointHosts: ['a.example'] };
    applyRuntimeSettings(env, settings);
    assert.deepEqual(env, { ...functionEnvironmentOf(settings), [environmentVariables.refreshWindowSeconds]: '90' });
  });

  it('an upstream budget over the function timeout is refused by cdk.json and the cold start alike', () => {
    const tooLong = runtimeSettings.upstreamBudgetMs.maximum;
    const [fromCdkJson] = problemsOf(() => parseTokenBrokerSettings({ clients, upstreamBudgetMs: tooLong }));
    const [fromEnvironment] = problemsOf(() => coldStart({ [environmentVariables.upstreamBudgetMs]: String(tooLong) }));
    assert.match(fromCdkJson ?? '', /^tokenBroker\.upstreamBudgetMs: .*over the function timeout/);
    assert.equal(
      fromEnvironment,
      fromCdkJson?.replace('tokenBroker.upstreamBudgetMs', environmentVariables.upstreamBudgetMs),
    );
  });
});

describe('the aliases and cache keys of the contract', () => {
  it("a client's alias is its name, its admin alias no client's name, and the API's alias neither", () => {
    assert.equal(clientAliasOf('bwell'), 'bwell');
    assert.equal(adminAliasOf('bwell'), 'bwell_admin');
    for (const alias of [adminAliasOf('bwell'), apiGatewayAliasName]) assert.ok(!clientNamePattern.test(alias), alias);
    assert.ok(!apiGatewayAliasName.endsWith(adminAliasSuffix));
  });

  it("every cache key of a client starts with its prefix, and no other client's does", () => {
    const keys = [cacheKeyOf('bwell', []), cacheKeyOf('bwell', ['a', 'b'], { audience: 'x', resource: 'y' })];
    for (const key of keys) assert.ok(key.startsWith(cacheKeyPrefixOf('bwell')), key);
    assert.ok(!cacheKeyOf('bwell-two', ['a']).startsWith(cacheKeyPrefixOf('bwell')));
  });

  it('every error code answers with a client or server error status', () => {
    for (const [code, status] of Object.entries(errorStatus)) assert.ok(status >= 400 && status < 600, code);
  });
});

const root = fileURLToPath(new URL('../../', import.meta.url));

/** Every TypeScript source of the construct and the function, as [path from the root, text]. */
function sources(): [string, string][] {
  const walk = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) return walk(path);
      return entry.name.endsWith('.ts') ? [path] : [];
    });
  return ['lambdas', 'lib'].flatMap((dir) =>
    walk(join(root, dir)).map((path): [string, string] => [relative(root, path), readFileSync(path, 'utf8')]),
  );
}

/** Code only, line for line: comments may name a variable or a limit to explain it. */
function withoutComments(text: string): string {
  return text
    .replace(/\/\*[\s\S]*?\*\//g, (comment) => comment.replace(/[^\n]/g, ''))
    .replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
}

describe('the contract is the only place its facts are written', () => {
  // Each fact as code would restate it, and what may spell it legitimately elsewhere.
  const restatements: {
    fact: string;
    pattern: RegExp;
    /** Files that may spell the same text for another reason. */
    allowed?: readonly string[];
    /** Lines that restate it still, wherever the construct's split puts them; to be written from the contract. */
    pending?: RegExp;
    inContract?: RegExp;
  }[] = [
    {
      fact: 'the token and JWKS routes',
      pattern: /\/clients\/(\$\{|\{|\*|')/,
    },
    { fact: 'a length limit of 1,024', pattern: /(?<!\* )\b1_?024\b/ },
    { fact: 'the 31-day lifetime limit', pattern: /31 \* 24 \* 3600|2_?678_?400/ },
    { fact: "the function's timeout", pattern: /\b15_?000\b/ },
    // The default stack name and the stack's construct id are also TokenBroker, and no namespace.
    { fact: 'the metrics namespace', pattern: /'TokenBroker'/, allowed: ['lib/token-broker-stack.ts'] },
    { fact: 'an environment variable of the function', pattern: /['"`]TOKEN_BROKER_(?!LOCAL_|URL|FUNCTION)/ },
    { fact: 'the admin alias suffix', pattern: /['"`]_admin['"`]/ },
    { fact: "the API Gateway's alias", pattern: /['"`]api_gateway['"`]/ },
    { fact: 'the cache-key prefix', pattern: /\}#`/ },
    { fact: 'the status of an error code', pattern: /\b[a-z]+_[a-z_]+: [45]\d\d\b/ },
    {
      fact: 'the default of a runtime setting',
      pattern: /\bdefault(?:RefreshWindowSeconds|UpstreamBudgetMs|RefreshAheadMaxSeconds|SecretMaxAge\w*) = \d/,
      inContract: /default: \d/,
    },
  ];

  for (const { fact, pattern, allowed = [], pending, inContract = pattern } of restatements) {
    it(`${fact}: written in lambdas/contract.ts only`, () => {
      const found = sources()
        .filter(([path]) => path !== 'lambdas/contract.ts' && !allowed.includes(path))
        .flatMap(([path, text]) =>
          withoutComments(text)
            .split('\n')
            .flatMap((line, index) =>
              pattern.test(line) && !pending?.test(line) ? [`${path}:${index + 1}: ${line.trim()}`] : [],
            ),
        );
      assert.deepEqual(found, []);
      assert.match(readFileSync(join(root, 'lambdas/contract.ts'), 'utf8'), inContract, 'the contract states it');
    });
  }
});
