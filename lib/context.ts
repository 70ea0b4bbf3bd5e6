import { readFileSync } from 'node:fs';
import {
  contextKey,
  parseTokenBrokerSettings,
  type SettingsOptions,
  type TokenBrokerSettings,
} from '../lambdas/core/settings.js';

export { contextKey };
/** The validated `tokenBroker` context: what the app hands to the stack. */
export type TokenBrokerContext = TokenBrokerSettings;

export interface ContextOptions {
  /** cdk.json's text, in which keys that JSON.parse (and so the CDK) silently drops are found. */
  cdkJsonText?: string;
  /** Where the context was read, for the error's header. */
  source?: string;
}

/**
 * Validates the whole `tokenBroker` context at synth with the parser the local server and the construct use
 * (lambdas/core/settings.ts). A string is accepted as JSON, for `cdk synth -c tokenBroker='{...}'`; otherwise,
 * given cdk.json's text, a key repeated under `context.tokenBroker` is a problem too.
 */
export function parseTokenBrokerContext(input: unknown, options: ContextOptions = {}): TokenBrokerContext {
  const settingsOptions: SettingsOptions = {};
  if (options.source !== undefined) settingsOptions.source = options.source;
  if (typeof input !== 'string' && options.cdkJsonText !== undefined) {
    settingsOptions.text = { json: options.cdkJsonText, path: ['context', contextKey] };
  }
  return parseTokenBrokerSettings(input, settingsOptions);
}

/** cdk.json's text, when the app runs where it is (the CDK CLI runs it in the project's directory). */
export function readCdkJsonText(path = 'cdk.json'): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}
