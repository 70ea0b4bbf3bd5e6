/**
 * The real local parts a broker runs against, started in one place for every harness and suite that needs them:
 * the stores (dynalite with the token table, the Secrets Manager stand-in holding the sealing key and, when the
 * suite brings one, the KMS stand-in) and oidc-provider over TLS with the test CA. `env` is what a broker needs on
 * top of the test runner's environment to reach them through the real SDK clients: the standard endpoint
 * variables, dummy credentials, the table and the sealing key. A broker in this process takes it with
 * `setEnvironment`, a broker in a child process gets it in its environment.
 *
 * `startLocalParts` given one `client` also registers it: its secret in the stand-in and a one-client registry in
 * `env`, which is what a suite that runs the broker in processes of its own needs. Given `clients`, the suite
 * registers them itself (test/support/broker-harness.ts, faults-harness.ts). A suite with an identity provider of
 * its own starts the stores alone (`startLocalStores`).
 */
import { environmentVariables } from '../../lambdas/entry/environment.js';
import { createTokenTable, type LocalDynamo, startDynalite } from '../../lambdas/local/dynalite.js';
import {
  type LocalOidcClient,
  type LocalOidcServer,
  type LocalOidcServerOptions,
  type LocalSecretClient,
  startOidcServer,
} from '../../lambdas/local/oidc-server.js';
import type { KmsStandIn } from './kms.js';
import { type SecretsManagerStandIn, startSecretsManagerStandIn, storeSealingKey } from './secrets-manager.js';
import { loadTestTls } from './tls.js';

export interface LocalStoresOptions {
  tableName: string;
  /** A KMS stand-in the suite started (its keys are in the provider's clients): its endpoint joins `env`. */
  kms?: KmsStandIn;
}

export interface LocalStores {
  dynamo: LocalDynamo;
  secretsManager: SecretsManagerStandIn;
  /** The sealing key the stand-in holds, for leak checks. */
  sealingKey: string;
  /** Endpoints, dummy credentials, region, table, sealing key (and registry); an `undefined` value removes a variable. */
  env: Record<string, string | undefined>;
  close(): Promise<void>;
}

export type LocalPartsOptions = LocalStoresOptions &
  (
    | {
        /** The clients oidc-provider knows, kept by reference: `restartProvider` reads them again. */
        clients: LocalOidcClient[];
        resourceServers?: LocalOidcServerOptions['resourceServers'];
      }
    | {
        /** The client's name in the broker's registry. */
        clientName: string;
        secretName: string;
        /** The client as the identity provider knows it; its scopes are the registry's, the first one the default. */
        client: LocalSecretClient;
      }
  );

export interface LocalParts extends LocalStores {
  /** The provider of the moment (`restartProvider` replaces it). */
  readonly oidc: LocalOidcServer;
  /**
   * Stops the provider and starts it again on the same port with its clients as they are now: how a secret is
   * rotated at the provider, whose clients are fixed when it starts.
   */
  restartProvider(): Promise<void>;
}

/** dynalite with the token table and the Secrets Manager stand-in with the sealing key; the suite's KMS stand-in. */
export async function startLocalStores(options: LocalStoresOptions): Promise<LocalStores> {
  const dynamo = await startDynalite();
  await createTokenTable(dynamo.endpoint, options.tableName);
  const secretsManager = await startSecretsManagerStandIn();
  const sealing = storeSealingKey(secretsManager);
  return {
    dynamo,
    secretsManager,
    sealingKey: sealing.key,
    env: {
      AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
      AWS_ENDPOINT_URL_SECRETS_MANAGER: secretsManager.endpoint,
      ...(options.kms === undefined ? {} : { AWS_ENDPOINT_URL_KMS: options.kms.endpoint }),
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      AWS_SESSION_TOKEN: undefined,
      AWS_REGION: 'us-east-1',
      [environmentVariables.tableName]: options.tableName,
      ...sealing.env,
    },
    close: async () => {
      await Promise.all([dynamo.close(), secretsManager.close(), options.kms?.close()]);
    },
  };
}

/** The stores and oidc-provider over TLS. */

export async function startLocalParts(options: LocalPartsOptions): Promise<LocalParts> {
  const { key, cert } = loadTestTls();
  const clients = 'clients' in options ? options.clients : [options.client];
  const resourceServers = 'clients' in options ? options.resourceServers : undefined;
  const providerOptions = (port?: number): LocalOidcServerOptions => ({
    clients,
    tls: { key, cert },
    ...(resourceServers === undefined ? {} : { resourceServers }),
    ...(port === undefined ? {} : { port }),
  });
  let oidc = await startOidcServer(providerOptions());
  const stores = await startLocalStores(options);
  const env = { ...stores.env };
  if ('client' in options) {
    const { client } = options;
    stores.secretsManager.putSecret(
      options.secretName,
      JSON.stringify({ client_id: client.clientId, client_secret: client.clientSecret }),
    );
    const registered = {
      wellKnownUrl: oidc.wellKnownUrl,
      secretName: options.secretName,
      scopes: client.scopes,
      defaultScope: client.scopes[0],
      authMethod: client.authMethod,
      // The provider names its token endpoint on another host than its issuer, as Cognito does.
      tokenEndpointHosts: [new URL(oidc.tokenEndpoint).host],
    };
    env[environmentVariables.clients] = JSON.stringify({ [options.clientName]: registered });
  }
  return {
    get oidc() {
      return oidc;
    },
    dynamo: stores.dynamo,
    secretsManager: stores.secretsManager,
    sealingKey: stores.sealingKey,
    env,
    async restartProvider() {
      const port = Number(new URL(oidc.issuer).port);
      await oidc.close();
      oidc = await startOidcServer(providerOptions(port));
    },
    async close() {
      await Promise.all([oidc.close(), stores.close()]);
    },
  };
}

/** Sets `env` in this process's environment, for a broker that runs here; an `undefined` value removes the variable. */
export function setEnvironment(env: Record<string, string | undefined>): void {
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
}
