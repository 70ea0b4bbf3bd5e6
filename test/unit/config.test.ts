import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ConfigError, discoveryLocation, parseClientRegistry } from '../../lambdas/core/config.js';

const valid = {
  wellKnownUrl: 'https://cognito-idp.us-east-1.amazonaws.com/us-east-1_e4iVm1J4X/.well-known/openid-configuration',
  secretName: 'token-broker/bwell',
  scopes: ['system/*.read', 'system/*.write'],
  defaultScope: 'system/*.read',
  authMethod: 'client_secret_post',
};

function problemsOf(raw: unknown, options = {}): string {
  try {
    parseClientRegistry(raw, options);
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error.message;
  }
  assert.fail('expected a ConfigError');
}

describe('client registry', () => {
  it('accepts the registry the repository ships in cdk.json', () => {
    const cdkJson = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8'));
    const registry = parseClientRegistry(cdkJson.context.tokenBroker.clients);
    assert.deepEqual(Object.keys(registry), ['bwell']);
    assert.equal(registry.bwell?.authMethod, 'client_secret_post');
  });

  it('names the client and the field of every problem', () => {
    const message = problemsOf({
      bwell: { ...valid, wellKnownUrl: 'http://issuer.example/.well-known/openid-configuration' },
      other: { ...valid, scopes: [], authMethod: 'private_key' },
    });
    assert.match(message, /tokenBroker\.clients\.bwell\.wellKnownUrl: must be an https URL/);
    assert.match(message, /tokenBroker\.clients\.other\.scopes: must be a non-empty array/);
    assert.match(message, /tokenBroker\.clients\.other\.authMethod: must be one of/);
  });

  it('refuses bad client names, unknown fields, scopes with spaces and a default outside the scopes', () => {
    assert.match(problemsOf({ 'B Well': valid }), /clients\.B Well: client name must match/);
    assert.match(problemsOf({ '123': valid }), /not be all digits/);
    assert.match(problemsOf({ bwell: { ...valid, scope: 'x' } }), /clients\.bwell\.scope: unknown field/);
    assert.match(problemsOf({ bwell: { ...valid, scopes: ['a b'] } }), /clients\.bwell\.scopes\[0\]/);
    assert.match(problemsOf({ bwell: { ...valid, defaultScope: 'admin' } }), /defaultScope: admin is not in scopes/);
    assert.match(problemsOf({ bwell: { ...valid, secretName: '' } }), /clients\.bwell\.secretName/);
    assert.match(
      problemsOf({ bwell: { ...valid, wellKnownUrl: 'https://x.example/token' } }),
      /wellKnownUrl: must end in/,
    );
    assert.match(problemsOf({}), /declares no client/);
    assert.match(problemsOf([]), /must be an object/);
  });

  it('accepts plain http discovery only on loopback and only when allowed', () => {
    const local = { ...valid, wellKnownUrl: 'http://127.0.0.1:9000/.well-known/openid-configuration' };
    assert.match(problemsOf({ demo: local }), /must be an https URL/);
    assert.doesNotThrow(() => parseClientRegistry({ demo: local }, { allowLoopbackHttp: true }));
    const remote = { ...valid, wellKnownUrl: 'http://issuer.example/.well-known/openid-configuration' };
    assert.match(problemsOf({ demo: remote }, { allowLoopbackHttp: true }), /must be an https URL/);
  });

  it('derives the issuer that the discovery document must name', () => {
    assert.equal(
      discoveryLocation(valid.wellKnownUrl).issuer.href,
      'https://cognito-idp.us-east-1.amazonaws.com/us-east-1_e4iVm1J4X',
    );
    const oauth2 = discoveryLocation('https://as.example/.well-known/oauth-authorization-server/tenant');
    assert.equal(oauth2.issuer.href, 'https://as.example/tenant');
    assert.equal(oauth2.algorithm, 'oauth2');
  });
});
