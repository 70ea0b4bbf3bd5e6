import {
  type AttributeValue,
  ConditionalCheckFailedException,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
} from '@aws-sdk/client-dynamodb';
import type { CachedToken, TokenCache } from '../core/ports.js';
import { partitionKey, ttlAttribute } from './dynamodb-schema.js';

/**
 * The shared token tier. Expiry is checked by the broker on every read, because DynamoDB's TTL
 * deletes expired items lazily, up to days later.
 */
export class DynamoDbTokenCache implements TokenCache {
  constructor(
    private readonly client: DynamoDBClient,
    private readonly tableName: string,
  ) {}

  async get(cacheKey: string): Promise<CachedToken | undefined> {
    const output = await this.client.send(
      new GetItemCommand({ TableName: this.tableName, Key: { [partitionKey]: { S: cacheKey } }, ConsistentRead: true }),
    );
    return output.Item === undefined ? undefined : fromItem(output.Item);
  }

  async put(cacheKey: string, token: CachedToken): Promise<void> {
    const expiresAt = Math.floor(token.expiresAt / 1000);
    try {
      await this.client.send(
        new PutItemCommand({
          TableName: this.tableName,
          Item: {
            [partitionKey]: { S: cacheKey },
            accessToken: { S: token.accessToken },
            tokenType: { S: token.tokenType },
            scope: { S: token.scope },
            issuedAt: { N: String(token.issuedAt) },
            [ttlAttribute]: { N: String(expiresAt) },
          },
          // Another container may have stored a newer token meanwhile: never replace it with an older one.
          ConditionExpression: 'attribute_not_exists(#key) OR #expiresAt < :expiresAt',
          ExpressionAttributeNames: { '#key': partitionKey, '#expiresAt': ttlAttribute },
          ExpressionAttributeValues: { ':expiresAt': { N: String(expiresAt) } },
        }),
      );
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
    }
  }
}

/** An item that does not have the expected shape reads as a miss, never as a token. */
function fromItem(item: Record<string, AttributeValue>): CachedToken | undefined {
  const accessToken = item.accessToken?.S;
  const tokenType = item.tokenType?.S;
  const scope = item.scope?.S;
  const issuedAt = Number(item.issuedAt?.N);
  const expiresAtSeconds = Number(item[ttlAttribute]?.N);
  if (!accessToken || !tokenType || scope === undefined) return undefined;
  if (!Number.isFinite(issuedAt) || !Number.isFinite(expiresAtSeconds)) return undefined;
  return { accessToken, tokenType, scope, issuedAt, expiresAt: expiresAtSeconds * 1000 };
}
