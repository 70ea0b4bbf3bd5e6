/**
 * What the bench's two processes tell each other. The entry (run-bench.ts) hosts the local servers and
 * prints; the measuring process (measure.ts), started with NODE_EXTRA_CA_CERTS, plays the Lambda container
 * and reports figures over the IPC channel (its stdout is /dev/null: the broker's logs go there).
 */

export const phases = ['inproc', 'http', 'burst', 'steady', 'fleet', 'cold'] as const;
export type Phase = (typeof phases)[number];

/** The local OpenID providers: one per access-token lifetime the bench needs. */
export type OidcName = 'main' | 'short' | 'long' | 'fleet';

export interface OidcEndpoints {
  issuer: string;
  wellKnownUrl: string;
  tokenEndpoint: string;
  ttlSeconds: number;
}

/** Passed to the measuring process as JSON in BENCH_SETUP. */
export interface BenchSetup {
  quick: boolean;
  phases: Phase[];
  /** How the bench was started, for the command lines printed with each figure. */
  benchCommand: string;
  /** The generated CA, trusted through NODE_EXTRA_CA_CERTS. */
  caPath: string;
  tableName: string;
  oidc: Record<OidcName, OidcEndpoints>;
  /** The one OAuth client every registry entry uses (a bench-generated secret). */
  credentials: { clientId: string; clientSecret: string; secretName: string };
  /** Scopes of the `miss` client: every request of the miss run asks for a scope set no one asked for before. */
  missScopes: string[];
  /** Registry entries, by client name: the value of TOKEN_BROKER_CLIENTS. */
  registry: Record<string, RegistryEntry>;
  /** Write V8 CPU profiles here (--cpu-prof-dir). */
  cpuProfDir: string | undefined;
}

export interface RegistryEntry {
  wellKnownUrl: string;
  secretName: string;
  scopes: string[];
  defaultScope?: string;
  authMethod: 'client_secret_post';
  tokenEndpointHosts: string[];
  maxTokenRequestsPerHour?: number;
}

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

export interface Target {
  /** e.g. "p99 < 1 ms". */
  text: string;
  pass: boolean;
}

export interface Figure {
  /** Section number from issue #5, e.g. "1a". */
  id: string;
  title: string;
  /** The command that produced the figure. */
  command: string;
  /** Human-readable result lines. */
  details: string[];
  /** The figure in a few words, for the summary table. */
  summary: string;
  target?: Target;
  data: { [key: string]: JsonValue };
}

export type ChildMessage =
  | { type: 'line'; text: string }
  | { type: 'figure'; figure: Figure }
  | { type: 'count'; id: number; oidc: OidcName }
  | { type: 'done' };

export type ParentMessage = { type: 'count'; id: number; value: number };

export function isChildMessage(message: unknown): message is ChildMessage {
  return typeof message === 'object' && message !== null && typeof (message as { type?: unknown }).type === 'string';
}

export function isParentMessage(message: unknown): message is ParentMessage {
  return (
    typeof message === 'object' &&
    message !== null &&
    (message as { type?: unknown }).type === 'count' &&
    typeof (message as { value?: unknown }).value === 'number'
  );
}
