import type { ChildProcess } from 'node:child_process';

const running = new Set<ChildProcess>();

/** Remembers a child this process started, so that it can be stopped if this process is stopped. */
export function track(child: ChildProcess): ChildProcess {
  running.add(child);
  child.once('exit', () => running.delete(child));
  return child;
}

/** Kills the tracked children that are still running (each by its own handle, nothing else). */
export function killTracked(): void {
  for (const child of running) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

/** Resolves with the first match of `pattern` in the child's stderr; rejects if it exits or `timeoutMs` passes. */
export function waitForStderr(child: ChildProcess, pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const finish = (error: Error | undefined, match?: RegExpMatchArray) => {
      clearTimeout(timer);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
      if (error !== undefined) reject(error);
      else if (match !== undefined) resolve(match);
    };
    const onData = (chunk: Buffer | string) => {
      seen += chunk.toString();
      const match = seen.match(pattern);
      if (match !== null) finish(undefined, match);
    };
    const onExit = (code: number | null) =>
      finish(
        new Error(`process ${child.pid} exited (${code}) before printing ${pattern}; stderr:\n${seen.slice(-4000)}`),
      );
    const timer = setTimeout(
      () =>
        finish(
          new Error(`process ${child.pid} did not print ${pattern} within ${timeoutMs} ms:\n${seen.slice(-4000)}`),
        ),
      timeoutMs,
    );
    child.stderr?.on('data', onData);
    child.once('exit', onExit);
  });
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. Only for children we started. */
export function stopChild(child: ChildProcess, graceMs = 5_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** A shell-quoted argument for printed command lines. */
export function shellQuote(value: string): string {
  return /^[A-Za-z0-9_./:=@%+,-]+$/.test(value) ? value : `'${value.replaceAll("'", `'\\''`)}'`;
}
