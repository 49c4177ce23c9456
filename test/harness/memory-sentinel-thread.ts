/**
 * The thread behind memory-sentinel.ts. It runs beside a vitest worker's main thread and samples the process's
 * resident set size. Past the limit it asks the main thread, through the inspector, where it is (a debugger pause
 * interrupts even a busy synchronous or microtask loop), records that with the memory breakdown and the test that
 * was running, and SIGKILLs its own process before the kernel's OOM killer picks a victim (possibly the API server).
 *
 * Plain TypeScript that Node strips itself: this file is loaded by `new Worker`, not by vitest.
 */
import { writeFileSync, writeSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';

interface SentinelData {
  readonly limitBytes: number;
  readonly intervalMs: number;
  readonly reportDir: string;
  readonly file: string;
}

interface CallFrame {
  readonly callFrameId: string;
  readonly functionName: string;
  readonly url: string;
  readonly location: {
    readonly scriptId: string;
    readonly lineNumber: number;
    readonly columnNumber: number;
  };
}

const data = workerData as SentinelData;
let current = '(between tests)';
parentPort?.on('message', (message: unknown) => {
  if (typeof message === 'string') current = message;
});

const within = <T>(promise: Promise<T>, ms: number): Promise<T | undefined> =>
  Promise.race([
    promise,
    new Promise<undefined>((resolve) => {
      setTimeout(() => {
        resolve(undefined);
      }, ms).unref();
    }),
  ]);

async function whereIsTheMainThread(): Promise<string[]> {
  const lines: string[] = [];
  const session = new Session();
  try {
    session.connectToMainThread();
    // Call frames name scripts by id; enabling the debugger announces every script with its URL.
    const scripts = new Map<string, string>();
    session.on('Debugger.scriptParsed', (message) => {
      const { scriptId, url } = message.params as { scriptId: string; url: string };
      scripts.set(scriptId, url);
    });
    await session.post('Debugger.enable');
    const paused = new Promise<readonly CallFrame[]>((resolve) => {
      session.once('Debugger.paused', (message) => {
        resolve((message.params as { callFrames: readonly CallFrame[] }).callFrames);
      });
    });
    await session.post('Debugger.pause');
    const frames = await within(paused, 5_000);
    if (frames === undefined) {
      lines.push(
        'main thread: ran no JavaScript within 5 s of the pause request (idle in the event loop or in native code)',
      );
    } else {
      lines.push('main thread JavaScript stack at the pause:');
      for (const frame of frames.slice(0, 40)) {
        const url =
          frame.url || (scripts.get(frame.location.scriptId) ?? `script ${frame.location.scriptId}`);
        const where = `${url}:${frame.location.lineNumber + 1}:${frame.location.columnNumber + 1}`;
        lines.push(`    at ${frame.functionName || '<anonymous>'} (${where})`);
      }
      const top = frames[0];
      if (top !== undefined) {
        const evaluated = await within(
          session.post('Debugger.evaluateOnCallFrame', {
            callFrameId: top.callFrameId,
            expression:
              'JSON.stringify({ memory: globalThis.process.memoryUsage(), resources: globalThis.process.getActiveResourcesInfo() })',
          }),
          5_000,
        );
        const value = (evaluated as { result?: { value?: unknown } } | undefined)?.result?.value;
        lines.push(`main thread: ${typeof value === 'string' ? value : 'memory breakdown unavailable'}`);
      }
    }
  } catch (error) {
    lines.push(
      `main thread: the inspector failed: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  return lines;
}

async function trip(rss: number): Promise<void> {
  const mib = (n: number): string => `${Math.round(n / 2 ** 20)} MiB`;
  const header = [
    `[memory-sentinel] pid ${process.pid}: resident set ${mib(rss)} passed the limit ${mib(data.limitBytes)}`,
    `file: ${data.file}`,
    `test: ${current}`,
  ];
  const report = [...header, ...(await whereIsTheMainThread())].join('\n');
  try {
    writeFileSync(join(data.reportDir, `${process.pid}.txt`), `${report}\n`);
  } catch {
    // The report still goes to stderr below.
  }
  writeSync(2, `\n${report}\n[memory-sentinel] killing this test worker\n`);
  process.kill(process.pid, 'SIGKILL');
}

let tripped = false;
setInterval(() => {
  const rss = process.memoryUsage.rss();
  if (tripped || rss < data.limitBytes) return;
  tripped = true;
  trip(rss).catch(() => process.kill(process.pid, 'SIGKILL'));
}, data.intervalMs);
