import { randomUUID } from 'node:crypto';
import {
  type AttributeValue,
  ConditionalCheckFailedException,
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  ScanCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { cacheKeyPrefixOf } from '../contract.js';
import { type Cooldown, type CooldownReason, cooldownMemorySeconds, firstCooldownSeconds } from '../core/cooldown.js';
import type { PutOutcome, StoredToken, TokenCache, TokenLease } from '../core/ports.js';
import { partitionKey, ttlAttribute } from './dynamodb-schema.js';

// Lease items share the table; the prefix cannot collide with a cache key, whose client name has no colon.
const leasePrefix = 'lease:';
const revokedPrefix = 'revoked:';
const cooldownPrefix = 'cooldown:';
const issuancePrefix = 'issued:';
// A window's count outlives it a day, for whoever looks into an alarm.
const issuanceTtlGraceSeconds = 24 * 3600;
/** The item of a client's revocation marker. */
export function revocationMarkerKey(clientName: string): string {
  return revokedPrefix + clientName;
}
/** Marks a token item written but not yet checked against its client's revocation marker (see put). */
const pendingAttribute = 'pending';
/** Which write a token item is, so that only that write publishes or deletes it. */
const writerAttribute = 'writer';
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

  /**
   * Writes the token as pending (read as a miss), then reads the client's revocation marker, then either
   * publishes the token (removes `pending`) or deletes it, each step conditional on the item still being this
   * write's. One transaction with a ConditionCheck on the marker would do it in one request, but the tests'
   * DynamoDB (dynalite) has no TransactWriteItems, and the tests must run the code production runs.
   *
   * Why no token issued at or before a marker can be read once its invalidation is over: an invalidation writes
   * the marker (M), then deletes every token item of the client it finds by a consistent scan (S, after M).
   * This write's marker read (R) comes after its pending write (W). If M came before R, R sees the marker and the
   * token is deleted without ever being published. If M came after R, then S came after W, so S finds the item
   * (pending or published) and deletes it, and a publish after that finds no item of this write's and does
   * nothing. Either way the token is never readable after the invalidation's deletions end. issuedAt is when
   * the request to the provider started, so a renewal begun before an invalidation is older than its marker
   * however late it lands (the clocks are the broker containers', which Lambda keeps in sync).
   */
  async put(
    cacheKey: string,
    token: StoredToken,
    issued: { clientName: string; issuedAt: number },
  ): Promise<PutOutcome> {
    const expiresAt = String(Math.floor(token.expiresAt / 1000));
    const writer = randomUUID();
    const item: Record<string, AttributeValue> = {
      [partitionKey]: { S: cacheKey },
      format: { N: String(token.format) },
      sealed: { B: token.sealed },
      [ttlAttribute]: { N: expiresAt },
      [writerAttribute]: { S: writer },
    };
    const written = await this.conditionally(() =>
      this.client.send(
        new PutItemCommand({
          TableName: this.tableName,
          Item: { ...item, [pendingAttribute]: { BOOL: true } },
          // Another container may have stored a newer token meanwhile: never replace it with an older one.
          ConditionExpression: 'attribute_not_exists(#key) OR #expiresAt < :expiresAt',
          ExpressionAttributeNames: { '#key': partitionKey, '#expiresAt': ttlAttribute },
          ExpressionAttributeValues: { ':expiresAt': { N: expiresAt } },
        }),
      ),
    );
    if (!written) return { outcome: 'not-stored' };
    const ours = {
      TableName: this.tableName,
      Key: { [partitionKey]: { S: cacheKey } },
      ConditionExpression: '#writer = :writer',
      ExpressionAttributeNames: { '#writer': writerAttribute },
      ExpressionAttributeValues: { ':writer': { S: writer } },
    };
    const revokedAt = await this.revokedAt(issued.clientName);
    if (revokedAt !== undefined && issued.issuedAt <= revokedAt) {
      await this.conditionally(() => this.client.send(new DeleteItemCommand(ours)));
      return { outcome: 'revoked', revokedAt };
    }
    // The same item without `pending`, by PutItem: the role needs no UpdateItem for it.
    const { Key: _key, ...condition } = ours;
    const published = await this.conditionally(() =>
      this.client.send(new PutItemCommand({ ...condition, Item: item })),
    );
    return { outcome: published ? 'stored' : 'not-stored' };
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
          [partitionKey]: { S: revocationMarkerKey(clientName) },
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
          ExpressionAttributeValues: { ':prefix': { S: cacheKeyPrefixOf(clientName) } },
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
        Key: { [partitionKey]: { S: revocationMarkerKey(clientName) } },
        ConsistentRead: true,
      }),
    );
    const at = Number(output.Item?.revokedAt?.N);
    return Number.isFinite(at) ? at : undefined;
  }

  async readCooldown(clientName: string): Promise<Cooldown | undefined> {
    const output = await this.client.send(
      new GetItemCommand({
        TableName: this.tableName,
        Key: { [partitionKey]: { S: cooldownPrefix + clientName } },
        ConsistentRead: true,
      }),
    );
    if (output.Item === undefined) return undefined;
    const until = Number(output.Item.cooldownUntil?.N);
    const failures = Number(output.Item.failures?.N);
    const reason = output.Item.reason?.S;
    // An item of another shape still stands for a failure: read as one that has lapsed.
    return {
      until: Number.isFinite(until) ? until : 0,
      reason: isCooldownReason(reason) ? reason : 'provider_failing',
      failures: Number.isInteger(failures) && failures > 0 ? failures : 1,
    };
  }

  /** The last failure wins: containers that fail together compute the same pause from the same previous one. */
  async writeCooldown(clientName: string, cooldown: Cooldown): Promise<void> {
    await this.client.send(
      new PutItemCommand({
        TableName: this.tableName,
        Item: {
          [partitionKey]: { S: cooldownPrefix + clientName },
          cooldownUntil: { N: String(cooldown.until) },
          reason: { S: cooldown.reason },
          failures: { N: String(cooldown.failures) },
          [ttlAttribute]: { N: String(Math.ceil(cooldown.until / 1000) + cooldownMemorySeconds) },
        },
      }),
    );
  }

  async clearCooldown(clientName: string): Promise<void> {
    await this.client.send(
      new DeleteItemCommand({ TableName: this.tableName, Key: { [partitionKey]: { S: cooldownPrefix + clientName } } }),
    );
  }

  /** One conditional ADD: atomic across containers, and refused (not counted) at the limit. */
  async countIssuance(
    clientName: string,
    window: { start: number; end: number },
    limit: number,
  ): Promise<number | undefined> {
    try {
      const output = await this.client.send(
        new UpdateItemCommand({
          TableName: this.tableName,
          Key: { [partitionKey]: { S: `${issuancePrefix}${clientName}@${Math.floor(window.start / 1000)}` } },
          UpdateExpression: 'ADD #calls :one SET #ttl = if_not_exists(#ttl, :ttl)',
          ConditionExpression: 'attribute_not_exists(#calls) OR #calls < :limit',
          ExpressionAttributeNames: { '#calls': 'calls', '#ttl': ttlAttribute },
          ExpressionAttributeValues: {
            ':one': { N: '1' },
            ':limit': { N: String(limit) },
            ':ttl': { N: String(Math.ceil(window.end / 1000) + issuanceTtlGraceSeconds) },
          },
          ReturnValues: 'UPDATED_NEW',
        }),
      );
      const calls = Number(output.Attributes?.calls?.N);
      return Number.isFinite(calls) ? calls : limit;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return undefined;
      throw error;
    }
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

function isCooldownReason(value: unknown): value is CooldownReason {
  return typeof value === 'string' && Object.hasOwn(firstCooldownSeconds, value);
}

/** An item that does not have the expected shape, or is not published yet, reads as a miss, never as a token. */
function fromItem(item: Record<string, AttributeValue>): StoredToken | undefined {
  if (item[pendingAttribute] !== undefined) return undefined;
  const format = Number(item.format?.N);
  const sealed = item.sealed?.B;
  const expiresAtSeconds = Number(item[ttlAttribute]?.N);
  if (!Number.isInteger(format) || sealed === undefined || !Number.isFinite(expiresAtSeconds)) return undefined;
  return { format, sealed, expiresAt: expiresAtSeconds * 1000 };
}
