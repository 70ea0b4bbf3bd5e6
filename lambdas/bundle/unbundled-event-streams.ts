/**
 * Stands in, in the Lambda bundle only, for `@smithy/core/event-streams`: the SDK loads it for operations that
 * stream events, and DynamoDB's and Secrets Manager's operations stream none. Bundled, it was 15 KiB that every
 * cold start compiled.
 */
function notBundled(): never {
  throw new Error('AWS SDK event streams are not part of the Lambda bundle');
}

export const eventStreamSerdeProvider = notBundled;

export class EventStreamSerde {
  constructor() {
    notBundled();
  }
}
