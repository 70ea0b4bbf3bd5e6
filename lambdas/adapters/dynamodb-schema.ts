/**
 * The token table's layout, shared by the DynamoDB adapter and the CDK stack so that the TTL the
 * table is configured with is the attribute the code writes.
 */
export const partitionKey = 'cacheKey';
/** Epoch seconds at which the token expires; the table's TTL attribute. */
export const ttlAttribute = 'expiresAt';
