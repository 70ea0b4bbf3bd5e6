/**
 * Text the broker did not write (a caller's field, a provider's error code, an AWS error name) is repeated in a
 * log line or an error description only when it is short and plain. Anything else is left out whole, never
 * shown in part: a prefix of a hostile value is still the hostile value's choice.
 */
export const plainCodePattern = /^[A-Za-z0-9_.-]{1,64}$/;

/** The value when it is a plain code (`[A-Za-z0-9_.-]`, at most 64 characters), else undefined. */
export function plainCode(value: unknown): string | undefined {
  return typeof value === 'string' && plainCodePattern.test(value) ? value : undefined;
}
