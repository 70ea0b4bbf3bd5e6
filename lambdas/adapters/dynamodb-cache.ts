import {
  type AttributeValue,
  ConditionalCheckFailedException,
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  ScanCommand,
} from '@aws-sdk/client-dynamodb';
import type { StoredToken, TokenCache, TokenLease } from '../core/ports.js';
import { partitionKey, ttlAttribute } from './dynamodb-schema.js';

// Lease items share the table; the prefix cannot collide with a cache key, whose client name has no colon.
const leasePrefix = 'lease:';
const revokedPrefix = 'revoked:';
// Lapsed leases are cleaned up by TTL a while after they end; reads never rely on that.
const leaseTtlGraceSeconds = 300;
// A revocation marker outlives every token issued before it (the broker accepts at most 31-day lifetimes).
const revocationTtlSeconds = 32 * 24 * 3600;

/**
 * The shared tier in DynamoDB: one item per cache key holding the sealed token, and short-lived lease
 * items taken with conditional writes. Expiry is checked by the broker on every read, because DynamoDB's
 * TTL deletes expired items lazily, up to days later.
 */
export class DynamoDbTokenCache implements TokenCache {
  constructor(
    private readonly client: DynamoDBClient,
    private readonly tableName: string,
  ) {}

  async get(cacheKey: string): Promise<StoredToken | undefined> {
    const output = await this.client.send(
      new GetItemCommand({ TableName: this.tableName, Key: { [partitionKey]: { S: cacheKey } }, ConsistentRead: true }),
    );
    return output.Item === undefined ? undefined : fromItem(output.Item);
  }

  async put(cacheKey: string, token: StoredToken): Promise<void> {
    const expiresAt = String(Math.floor(token.expiresAt / 1000));
    await this.conditionally(() =>
      this.client.send(
        new PutItemCommand({
          TableName: this.tableName,
          Item: {
            [partitionKey]: { S: cacheKey },
            format: { N: String(token.format) },
            sealed: { B: token.sealed },
            [ttlAttribute]: { N: expiresAt },
          },
          // Another container may have stored a newer token meanwhile: never replace it with an older one.
          ConditionExpression: 'attribute_not_exists(#key) OR #expiresAt < :expiresAt',
          ExpressionAttributeNames: { '#key': partitionKey, '#expiresAt': ttlAttribute },
          ExpressionAttributeValues: { ':expiresAt': { N: expiresAt } },
        }),
      ),
    );
  }

  async acquireLease(cacheKey: string, holder: string, now: number, until: number): Promise<boolean> {
    return this.conditionally(() =>
      this.client.send(
        new PutItemCommand({
          TableName: this.tableName,
          Item: {
            [partitionKey]: { S: leasePrefix + cacheKey },
            holder: { S: holder },
            leaseUntil: { N: String(until) },
            [ttlAttribute]: { N: String(Math.ceil(until / 1000) + leaseTtlGraceSeconds) },
          },
          ConditionExpression: 'attribute_not_exists(#key) OR #leaseUntil < :now OR #holder = :holder',
          ExpressionAttributeNames: { '#key': partitionKey, '#leaseUntil': 'leaseUntil', '#holder': 'holder' },
          ExpressionAttributeValues: { ':now': { N: String(now) }, ':holder': { S: holder } },
        }),
      ),
    );
  }

  async releaseLease(cacheKey: string, holder: string): Promise<void> {
    await this.conditionally(() =>
      this.client.send(
        new DeleteItemCommand({
          TableName: this.tableName,
          Key: { [partitionKey]: { S: leasePrefix + cacheKey } },
          ConditionExpression: '#holder = :holder',
          ExpressionAttributeNames: { '#holder': 'holder' },
          ExpressionAttributeValues: { ':holder': { S: holder } },
        }),
      ),
    );
  }

  async readLease(cacheKey: string): Promise<TokenLease | undefined> {
    const output = await this.client.send(
      new GetItemCommand({
        TableName: this.tableName,
        Key: { [partitionKey]: { S: leasePrefix + cacheKey } },
        ConsistentRead: true,
      }),
    );
    if (output.Item === undefined) return undefined;
    // An item of another shape still stands for a lease (it is not released): read as lapsed.
    const until = Number(output.Item.leaseUntil?.N);
    return { holder: output.Item.holder?.S ?? '', until: Number.isFinite(until) ? until : 0 };
  }

  /** The table is a small cache (clients × scope sets), so an administrative scan of it is cheap. */
  async revokeClient(clientName: string, at: number): Promise<number> {
    await this.client.send(
      new PutItemCommand({
        TableName: this.tableName,
        Item: {
          [partitionKey]: { S: revokedPrefix + clientName },
          revokedAt: { N: String(at) },
          [ttlAttribute]: { N: String(Math.ceil(at / 1000) + revocationTtlSeconds) },
        },
      }),
    );
    let deleted = 0;
    let startKey: Record<string, AttributeValue> | undefined;
    do {
      const page = await this.client.send(
        new ScanCommand({
          TableName: this.tableName,
          ProjectionExpression: '#key',
          FilterExpression: 'begins_with(#key, :prefix)',
          ExpressionAttributeNames: { '#key': partitionKey },
          ExpressionAttributeValues: { ':prefix': { S: `${clientName}#` } },
          ConsistentRead: true,
          ExclusiveStartKey: startKey,
        }),
      );
      for (const item of page.Items ?? []) {
        await this.client.send(
          new DeleteItemCommand({
            TableName: this.tableName,
            Key: { [partitionKey]: item[partitionKey] as AttributeValue },
          }),
        );
        deleted++;
      }
      startKey = page.LastEvaluatedKey;
    } while (startKey !== undefined);
    return deleted;
  }

  async revokedAt(clientName: string): Promise<number | undefined> {
    const output = await this.client.send(
      new GetItemCommand({
        TableName: this.tableName,
        Key: { [partitionKey]: { S: revokedPrefix + clientName } },
        ConsistentRead: true,
      }),
    );
    const at = Number(output.Item?.revokedAt?.N);
    return Number.isFinite(at) ? at : undefined;
  }

  /** True when the write happened, false when its condition did not hold. */
  private async conditionally(write: () => Promise<unknown>): Promise<boolean> {
    try {
      await write();
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }
}

/** An item that does not have the expected shape reads as a miss, never as a token. */
function fromItem(item: Record<string, AttributeValue>): StoredToken | undefined {
  const format = Number(item.format?.N);
  const sealed = item.sealed?.B;
  const expiresAtSeconds = Number(item[ttlAttribute]?.N);
  if (!Number.isInteger(format) || sealed === undefined || !Number.isFinite(expiresAtSeconds)) return undefined;
  return { format, sealed, expiresAt: expiresAtSeconds * 1000 };
}
