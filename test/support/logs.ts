/**
 * Capturing what the code under test writes to stdout and stderr, to assert that secrets never reach logs.
 *
 * What gets captured: every write to `process.stdout` / `process.stderr` — `console.*`, Powertools Logger
 * (which writes through a `new Console({ stdout: process.stdout, stderr: process.stderr })`, i.e. calls
 * `write` on these same stream objects) and direct `process.stdout.write` calls. Captured output is not
 * printed.
 *
 * Why writes are filtered rather than all swallowed: node:test reports through the very same stream.
 * Under `node --test` (process isolation, what test/run-tests.ts uses) each test file runs in a child whose
 * reporter is `v8-serializer`: it pipes binary frames (v8 serialization header 0xFF 0x0F...) into
 * `process.stdout`, and the parent decodes them. These frames are emitted asynchronously, whenever the
 * reporter stream flushes — typically while a later test is running — so a naive
 * `process.stdout.write = ...` swallows the results of OTHER tests: verified on Node 22, a file with
 * 11 passing tests then reported only 6, silently. (Without process isolation, or when a file is run with
 * plain `node file.test.ts`, the reporter pipes text into `process.stdout` instead.)
 * In every mode the reporter's writes come from a stream pipe: the direct caller of `write` is
 * `ondata` in `node:internal/streams/readable`. So a write is passed through to the real stream when
 * its caller is a pipe, or when it is a v8-serializer frame inside a `node --test` child; everything else is
 * captured. (Piping your own stream into process.stdout would therefore not be captured.)
 *
 * Several captures may be active at once; each sees every write made while it is active, and `restore()`
 * may be called in any order (and more than once).
 */
import assert from 'node:assert/strict';

export interface CapturedOutput {
  /** Everything captured so far, stdout and stderr interleaved in write order. */
  text(): string;
  /** Stops this capture. */
  restore(): void;
}

type Write = NodeJS.WriteStream['write'];
type WriteCallback = (error?: Error | null) => void;

const streams = [process.stdout, process.stderr];
const activeSinks = new Set<string[]>();
let originals: { stream: NodeJS.WriteStream; ownWrite: PropertyDescriptor | undefined; write: Write }[] = [];

function isTestReporterWrite(chunk: unknown, caller: string | undefined): boolean {
  if (caller !== undefined && /\bondata \(node:internal\/streams\/readable/.test(caller)) return true;
  return (
    process.env.NODE_TEST_CONTEXT === 'child-v8' &&
    chunk instanceof Uint8Array &&
    chunk[0] === 0xff &&
    chunk[1] === 0x0f
  );
}

/** The stack frame that called `fn`, e.g. `at Duplex.ondata (node:internal/streams/readable:1009:22)`. */
function callerOf(fn: Write): string | undefined {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 1;
  const holder: { stack?: unknown } = {};
  Error.captureStackTrace(holder, fn);
  Error.stackTraceLimit = limit;
  // A library's Error.prepareStackTrace may make `stack` something other than the default text.
  return typeof holder.stack === 'string' ? holder.stack.split('\n')[1] : undefined;
}

function toText(chunk: unknown, encoding: unknown): string {
  if (typeof chunk === 'string') return chunk;
  if (chunk instanceof Uint8Array) {
    return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString(
      typeof encoding === 'string' && Buffer.isEncoding(encoding) ? encoding : 'utf8',
    );
  }
  return String(chunk);
}

function install(): void {
  originals = streams.map((stream) => {
    const ownWrite = Object.getOwnPropertyDescriptor(stream, 'write');
    const write = stream.write;
    const capturingWrite = function (this: NodeJS.WriteStream, chunk: unknown, ...rest: unknown[]): boolean {
      if (isTestReporterWrite(chunk, callerOf(capturingWrite))) {
        return Reflect.apply(write, this, [chunk, ...rest]) as boolean;
      }
      const text = toText(chunk, typeof rest[0] === 'string' ? rest[0] : undefined);
      for (const sink of activeSinks) sink.push(text);
      const callback = rest.find((arg): arg is WriteCallback => typeof arg === 'function');
      if (callback) process.nextTick(callback, null);
      return true;
    } as Write;
    stream.write = capturingWrite;
    return { stream, ownWrite, write };
  });
}

function uninstall(): void {
  for (const { stream, ownWrite } of originals) {
    if (ownWrite) Object.defineProperty(stream, 'write', ownWrite);
    else delete (stream as { write?: Write }).write;
  }
  originals = [];
}

/** Starts capturing stdout and stderr (see the file comment for what passes through). */
export function captureOutput(): CapturedOutput {
  const sink: string[] = [];
  if (activeSinks.size === 0) install();
  activeSinks.add(sink);
  return {
    text: () => sink.join(''),
    restore() {
      if (!activeSinks.delete(sink)) return;
      if (activeSinks.size === 0) uninstall();
    },
  };
}

/**
 * Fails if any of `secrets` occurs in `text` — verbatim, JSON-escaped or URL-encoded. The failure names the
 * leaked value by its index in `secrets` (pass them in a documented order, e.g. [clientSecret, accessToken]),
 * never the value itself, so that the assertion cannot leak it into test output.
 */
export function assertNoLeak(text: string, secrets: string[]): void {
  const leaked: string[] = [];
  secrets.forEach((secret, index) => {
    if (secret.length === 0) {
      assert.fail(`assertNoLeak: secret #${index} is empty, which would match any text`);
    }
    const forms = new Map<string, string>([
      ['verbatim', secret],
      ['JSON-escaped', JSON.stringify(secret).slice(1, -1)],
      ['URL-encoded', encodeURIComponent(secret)],
      ['form-encoded', new URLSearchParams({ s: secret }).toString().slice(2)],
    ]);
    const checked = new Set<string>();
    const found: string[] = [];
    for (const [form, value] of forms) {
      if (checked.has(value)) continue;
      checked.add(value);
      if (text.includes(value)) found.push(form);
    }
    if (found.length > 0) leaked.push(`secret #${index} (${found.join(', ')})`);
  });
  if (leaked.length > 0) {
    assert.fail(`secret value leaked into the captured output: ${leaked.join('; ')}`);
  }
}
