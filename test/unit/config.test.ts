import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import {
  type ClientConfig,
  ConfigError,
  discoveryLocation,
  parseClientRegistry,
  providerHostOf,
} from '../../lambdas/core/config.js';

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

  it('takes a maxTokenRequestsPerHour of 1 to 100000 and keeps it; refuses anything else', () => {
    const registry = parseClientRegistry({ bwell: { ...valid, maxTokenRequestsPerHour: 30 } });
    assert.equal(registry.bwell?.maxTokenRequestsPerHour, 30);
    assert.equal(parseClientRegistry({ bwell: valid }).bwell?.maxTokenRequestsPerHour, undefined);
    for (const bad of [0, -1, 1.5, 100_001, '30', null]) {
      assert.match(
        problemsOf({ bwell: { ...valid, maxTokenRequestsPerHour: bad } }),
        /clients\.bwell\.maxTokenRequestsPerHour: must be a whole number of requests from 1 to 100000/,
      );
    }
  });

  it('takes a KMS signing key for private_key_jwt clients, with an optional kid and algorithm', () => {
    const signingKeyArn = 'arn:aws:kms:us-east-1:123456789012:key/0f0e0d0c-1111-2222-3333-444455556666';
    const kmsClient = { ...valid, authMethod: 'private_key_jwt', signingKeyArn };
    const registry = parseClientRegistry({
      bwell: { ...kmsClient, signingKeyId: 'epic-2026', signingAlgorithm: 'PS256' },
    });
    assert.equal(registry.bwell?.signingKeyArn, signingKeyArn);
    assert.equal(registry.bwell?.signingKeyId, 'epic-2026');
    assert.equal(registry.bwell?.signingAlgorithm, 'PS256');
    assert.match(
      problemsOf({ bwell: { ...kmsClient, signingKeyArn: 'arn:aws:kms:us-east-1:123456789012:alias/epic' } }),
      /clients\.bwell\.signingKeyArn: must be a KMS key ARN/,
    );
    assert.match(
      problemsOf({ bwell: { ...valid, signingKeyArn } }),
      /clients\.bwell\.signingKeyArn: needs authMethod private_key_jwt/,
    );
    assert.match(problemsOf({ bwell: { ...valid, signingKeyId: 'k' } }), /signingKeyId: only with signingKeyArn/);
    assert.match(
      problemsOf({ bwell: { ...kmsClient, signingAlgorithm: 'HS256' } }),
      /signingAlgorithm: must be one of RS256, RS384, PS256, PS384, ES256, ES384/,
    );
    assert.match(problemsOf({ bwell: { ...kmsClient, signingKeyId: 'a b' } }), /signingKeyId: must be 1 to 256/);
  });

  it('takes the keys a hosted JWKS publishes: KMS key ARNs and public JWKs with a kid, for private_key_jwt only', () => {
    const keyArn = 'arn:aws:kms:us-east-1:123456789012:key/0f0e0d0c-1111-2222-3333-444455556666';
    const jwk = { kty: 'RSA', kid: 'epic-2026', n: 'sXch', e: 'AQAB' };
    const keyClient = { ...valid, authMethod: 'private_key_jwt' };
    const registry = parseClientRegistry({ bwell: { ...keyClient, jwksKeyArns: [keyArn], jwks: [jwk] } });
    assert.deepEqual(registry.bwell?.jwksKeyArns, [keyArn]);
    assert.deepEqual(registry.bwell?.jwks, [jwk]);
    assert.match(
      problemsOf({ bwell: { ...valid, jwks: [jwk] } }),
      /clients\.bwell\.jwks: needs authMethod private_key_jwt/,
    );
    assert.match(
      problemsOf({ bwell: { ...keyClient, jwksKeyArns: ['arn:aws:kms:us-east-1:123456789012:alias/next'] } }),
      /clients\.bwell\.jwksKeyArns\[0\]: must be a KMS key ARN/,
    );
    assert.match(
      problemsOf({ bwell: { ...keyClient, jwks: [{ ...jwk, d: 'private', p: 'x' }] } }),
      /clients\.bwell\.jwks\[0\]: holds private key members \(d, p\): publish only the public key/,
    );
    assert.match(problemsOf({ bwell: { ...keyClient, jwks: [{ ...jwk, kid: undefined }] } }), /jwks\[0\]: needs a kid/);
    assert.match(
      problemsOf({ bwell: { ...keyClient, jwks: [{ kty: 'oct', kid: 'k', k: 'x' }] } }),
      /jwks\[0\]: holds private/,
    );
    assert.match(
      problemsOf({ bwell: { ...keyClient, jwks: [{ kty: 'EC', kid: 'k', crv: 'P-256' }] } }),
      /jwks\[0\]: lacks x, y/,
    );
    assert.match(problemsOf({ bwell: { ...keyClient, jwks: [jwk, jwk] } }), /jwks: kid epic-2026 is listed twice/);
    assert.match(problemsOf({ bwell: { ...keyClient, jwks: jwk } }), /jwks: must be an array/);
  });

  it('takes webIdentityAudience for secretless private_key_jwt clients, alone of the key fields', () => {
    const federated = { ...valid, authMethod: 'private_key_jwt', webIdentityAudience: 'api://AzureADTokenExchange' };
    const registry = parseClientRegistry({ bwell: { ...federated, webIdentitySigningAlgorithm: 'ES384' } });
    assert.equal(registry.bwell?.webIdentityAudience, 'api://AzureADTokenExchange');
    assert.equal(registry.bwell?.webIdentitySigningAlgorithm, 'ES384');
    assert.match(
      problemsOf({ bwell: { ...valid, webIdentityAudience: 'api://x' } }),
      /clients\.bwell\.webIdentityAudience: needs authMethod private_key_jwt/,
    );
    for (const bad of ['', 'has space', 'x'.repeat(1001), 7]) {
      assert.match(
        problemsOf({ bwell: { ...federated, webIdentityAudience: bad } }),
        /webIdentityAudience: must be 1 to 1000/,
      );
    }
    const keyArn = 'arn:aws:kms:us-east-1:123456789012:key/0f0e0d0c-1111-2222-3333-444455556666';
    assert.match(
      problemsOf({ bwell: { ...federated, signingKeyArn: keyArn } }),
      /clients\.bwell\.signingKeyArn: not with webIdentityAudience/,
    );
    assert.match(
      problemsOf({ bwell: { ...federated, webIdentitySigningAlgorithm: 'PS256' } }),
      /must be one of RS256, ES384/,
    );
    assert.match(
      problemsOf({ bwell: { ...valid, authMethod: 'private_key_jwt', webIdentitySigningAlgorithm: 'RS256' } }),
      /webIdentitySigningAlgorithm: only with webIdentityAudience/,
    );
  });

  it('accepts plain http discovery only on loopback and only when allowed', () => {
    const local = { ...valid, wellKnownUrl: 'http://127.0.0.1:9000/.well-known/openid-configuration' };
    assert.match(problemsOf({ demo: local }), /must be an https URL/);
    assert.doesNotThrow(() => parseClientRegistry({ demo: local }, { allowLoopbackHttp: true }));
    const remote = { ...valid, wellKnownUrl: 'http://issuer.example/.well-known/openid-configuration' };
    assert.match(problemsOf({ demo: remote }, { allowLoopbackHttp: true }), /must be an https URL/);
  });

  it('accepts tokenEndpointHosts of lowercase host names, with a port only when it is not 443, and keeps them', () => {
    const hosts = [
      'auth.example.com',
      'idp.example.org:8443',
      'localhost:9443',
      '127.0.0.1:8443',
      'xn--bcher-kva.example',
    ];
    const registry = parseClientRegistry({ bwell: { ...valid, tokenEndpointHosts: hosts } });
    assert.deepEqual(registry.bwell?.tokenEndpointHosts, hosts);
    assert.equal(parseClientRegistry({ bwell: valid }).bwell?.tokenEndpointHosts, undefined);
  });

  it('refuses tokenEndpointHosts with schemes, paths, misplaced wildcards, odd spellings or repeats', () => {
    const entry = /tokenEndpointHosts\[0\]: must be a lowercase DNS host name/;
    for (const host of [
      'https://auth.example.com',
      'auth.example.com/oauth2/token',
      'auth.*.example.com',
      '*',
      'Auth.Example.com',
      'auth.example.com.',
      'auth.example.com:443',
      'auth.example.com:08443',
      'auth.example.com:70000',
      'auth.example.com:',
      'user@auth.example.com',
      'auth_example.com',
      '-auth.example.com',
      'auth..example.com',
      '[::1]',
      '1.2.3',
      'auth.example.123',
      ` auth.example.com`,
      `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(63)}`,
      '',
      42,
    ]) {
      assert.match(problemsOf({ bwell: { ...valid, tokenEndpointHosts: [host] } }), entry, String(host));
    }
    for (const hosts of [[], 'auth.example.com', { host: 'auth.example.com' }, null]) {
      assert.match(
        problemsOf({ bwell: { ...valid, tokenEndpointHosts: hosts } }),
        /clients\.bwell\.tokenEndpointHosts: must be a non-empty array of host names/,
      );
    }
    assert.match(
      problemsOf({ bwell: { ...valid, tokenEndpointHosts: ['auth.example.com', 'auth.example.com'] } }),
      /tokenEndpointHosts: must not repeat a host/,
    );
  });

  it('accepts a tokenEndpointHosts wildcard of one label over three fixed labels, and refuses a broader one', () => {
    const pools = '*.auth.us-east-1.amazoncognito.com';
    assert.deepEqual(
      parseClientRegistry({ bwell: { ...valid, tokenEndpointHosts: [pools] } }).bwell?.tokenEndpointHosts,
      [pools],
    );
    assert.match(
      problemsOf({ bwell: { ...valid, tokenEndpointHosts: ['*.amazoncognito.com'] } }),
      /clients\.bwell\.tokenEndpointHosts\[0\]: is too broad/,
    );
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

  it('takes a SMART configuration at a FHIR base, whose base (not an issuer) approves the token endpoint host', () => {
    const smart = discoveryLocation('https://fhir.epic.example/api/FHIR/R4/.well-known/smart-configuration');
    assert.equal(smart.algorithm, 'smart');
    assert.equal(smart.issuer.href, 'https://fhir.epic.example/api/FHIR/R4');
    const registry = parseClientRegistry({
      epic: { ...valid, wellKnownUrl: 'https://fhir.epic.example/api/FHIR/R4/.well-known/smart-configuration' },
    });
    assert.equal(providerHostOf(registry.epic as ClientConfig), 'fhir.epic.example');
  });

  it('takes a fixed tokenEndpoint instead of wellKnownUrl, never both, and never with tokenEndpointHosts', () => {
    const { wellKnownUrl: _discovered, ...fixed } = valid;
    const registry = parseClientRegistry({
      legacy: { ...fixed, tokenEndpoint: 'https://auth.legacy.example/oauth/token' },
    });
    assert.equal(registry.legacy?.tokenEndpoint, 'https://auth.legacy.example/oauth/token');
    assert.equal(registry.legacy?.wellKnownUrl, undefined);
    assert.equal(providerHostOf(registry.legacy as ClientConfig), 'auth.legacy.example');

    assert.match(problemsOf({ legacy: fixed }), /legacy\.wellKnownUrl: is required \(or tokenEndpoint/);
    assert.match(
      problemsOf({ legacy: { ...valid, tokenEndpoint: 'https://auth.legacy.example/token' } }),
      /legacy\.tokenEndpoint: not with wellKnownUrl/,
    );
    assert.match(
      problemsOf({ legacy: { ...fixed, tokenEndpoint: 'http://auth.legacy.example/token' } }),
      /legacy\.tokenEndpoint: must be an https URL/,
    );
    assert.match(
      problemsOf({ legacy: { ...fixed, tokenEndpoint: 'https://user:pw@auth.legacy.example/token' } }),
      /legacy\.tokenEndpoint: must not carry credentials/,
    );
    assert.match(
      problemsOf({ legacy: { ...fixed, tokenEndpoint: 'https://a.example/token', tokenEndpointHosts: ['a.example'] } }),
      /legacy\.tokenEndpointHosts: not with tokenEndpoint/,
    );
    assert.match(problemsOf({ legacy: { ...fixed, tokenEndpoint: 'token' } }), /must be an absolute URL/);
  });
});
