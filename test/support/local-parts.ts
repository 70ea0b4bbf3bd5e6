/**
 * The real local parts a broker process needs, for tests that run the broker in processes of their own: oidc-provider
 * over TLS with one client, dynalite with the token table, and the Secrets Manager stand-in holding that client's
 * secret. `env` is what such a process needs on top of the test runner's environment to reach them.
 */
import { environmentVariables } from '../../lambdas/entry/environment.js';
import { createTokenTable, type LocalDynamo, startDynalite } from '../../lambdas/local/dynalite.js';
import { type LocalOidcServer, type LocalSecretClient, startOidcServer } from '../../lambdas/local/oidc-server.js';
import { type SecretsManagerStandIn, startSecretsManagerStandIn, storeSealingKey } from './secrets-manager.js';
import { loadTestTls } from './tls.js';

export interface LocalPartsOptions {
  tableName: string;
  secretName: string;
  /** The client's name in the broker's registry. */
  clientName: string;
  /** The client as the identity provider knows it; its scopes are the registry's, the first one the default. */
  client: LocalSecretClient;
}

export interface LocalParts {
  oidc: LocalOidcServer;
  dynamo: LocalDynamo;
  secretsManager: SecretsManagerStandIn;
  /** The sealing key the stand-in holds, for leak checks. */
  sealingKey: string;
  /** Endpoints, dummy credentials, region, table and registry; an `undefined` value removes a variable. */
  env: Record<string, string | undefined>;
  close(): Promise<void>;
}

export async function startLocalParts(options: LocalPartsOptions): Promise<LocalParts> {
  const { key, cert } = loadTestTls();
  const oidc = await startOidcServer({ clients: [options.client], tls: { key, cert } });
  const dynamo = await startDynalite();
  await createTokenTable(dynamo.endpoint, options.tableName);
  const secretsManager = await startSecretsManagerStandIn();
  secretsManager.putSecret(
    options.secretName,
    JSON.stringify({ client_id: options.client.clientId, client_secret: options.client.clientSecret }),
  );
  const sealing = storeSealingKey(secretsManager);
  const registered = {
    wellKnownUrl: oidc.wellKnownUrl,
    secretName: options.secretName,
    scopes: options.client.scopes,
    defaultScope: options.client.scopes[0],
    authMethod: options.client.authMethod,
    // The provider names its token endpoint on another host than its issuer, as Cognito does.
    tokenEndpointHosts: [new URL(oidc.tokenEndpoint).host],
  };
  return {
    oidc,
    dynamo,
    secretsManager,
    sealingKey: sealing.key,
    env: {
      AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
      AWS_ENDPOINT_URL_SECRETS_MANAGER: secretsManager.endpoint,
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      AWS_SESSION_TOKEN: undefined,
      AWS_REGION: 'us-east-1',
      [environmentVariables.tableName]: options.tableName,
      ...sealing.env,
      [environmentVariables.clients]: JSON.stringify({ [options.clientName]: registered }),
    },
    close: async () => {
      await Promise.all([oidc.close(), dynamo.close(), secretsManager.close()]);
    },
  };
}
