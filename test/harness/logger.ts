/** A winston logger that keeps every JSON line in memory, for tests that assert on what was logged. */
import { Writable } from 'node:stream';
import winston from 'winston';

/** A JSON winston logger at debug level that keeps what it writes in `lines` (one entry a log line). */
export function memoryLogger(): { logger: winston.Logger; lines: string[] } {
  const lines: string[] = [];
  const { logger } = memoryLoggerWith((text) => {
    lines.push(text);
  });
  return { logger, lines };
}

function memoryLoggerWith(keep: (text: string) => void): { logger: winston.Logger } {
  const logger = winston.createLogger({
    level: 'debug',
    format: winston.format.json(),
    transports: [
      new winston.transports.Stream({
        stream: new Writable({
          write(chunk: Buffer, _encoding, done) {
            keep(chunk.toString('utf8'));
            done();
          },
        }),
      }),
    ],
  });
  return { logger };
}

/** A line of a JSON log: the fields winston wrote. */
export type JsonLogLine = Readonly<Record<string, unknown>> & {
  readonly level: string;
  readonly message: string;
};

/** A JSON winston logger at debug level whose lines land parsed in `lines`. */
export function capturingLogger(): { logger: winston.Logger; lines: JsonLogLine[] } {
  const lines: JsonLogLine[] = [];
  const { logger } = memoryLoggerWith((text) => {
    lines.push(JSON.parse(text) as JsonLogLine);
  });
  return { logger, lines };
}
