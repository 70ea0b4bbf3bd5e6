/**
 * An in-memory DynamoDB (dynalite) for the tests and the local dev server, and the broker's token table
 * created in it through the real AWS SDK client.
 */
import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import { CreateTableCommand, DynamoDBClient, waitUntilTableExists } from '@aws-sdk/client-dynamodb';
import { partitionKey } from '../adapters/dynamodb-schema.js';
import { listenOnLoopback } from './listen.js';

export interface LocalDynamo {
  /** `http://127.0.0.1:<port>` */
  endpoint: string;
  close(): Promise<void>;
}

interface DynaliteOptions {
  createTableMs?: number;
  deleteTableMs?: number;
  updateTableMs?: number;
  maxItemSizeKb?: number;
  path?: string;
}
/** dynalite (CommonJS, no type declarations) returns an http.Server whose close() also closes its store. */
type Dynalite = (options?: DynaliteOptions) => Server;

const dynalite = createRequire(import.meta.url)('dynalite') as Dynalite;

/** Starts dynalite on 127.0.0.1 (a free port), in memory, with tables ACTIVE as soon as created. */
export async function startDynalite(): Promise<LocalDynamo> {
  const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  const port = await listenOnLoopback(server);
  return {
    endpoint: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        // Not only the idle ones: a request still in flight (a background revocation check, say) would
        // otherwise keep its keep-alive socket, and with it close(), open.
        server.closeAllConnections();
      }),
  };
}

/**
 * Creates the broker's token table (partition key `partitionKey`, a string; on-demand billing) at a local
 * endpoint and waits until it is ACTIVE. Local tooling only: the endpoint is explicit and the credentials are
 * placeholders, which dynalite does not check.
 */
export async function createTokenTable(endpoint: string, tableName: string): Promise<void> {
  const client = new DynamoDBClient({
    endpoint,
    region: process.env.AWS_REGION ?? 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
  try {
    await client.send(
      new CreateTableCommand({
        TableName: tableName,
        AttributeDefinitions: [{ AttributeName: partitionKey, AttributeType: 'S' }],
        KeySchema: [{ AttributeName: partitionKey, KeyType: 'HASH' }],
        BillingMode: 'PAY_PER_REQUEST',
      }),
    );
    await waitUntilTableExists({ client, minDelay: 1, maxDelay: 1, maxWaitTime: 30 }, { TableName: tableName });
  } finally {
    client.destroy();
  }
}
