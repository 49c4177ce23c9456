/** A winston logger that keeps every JSON line in memory, for tests that assert on what was logged. */
import { Writable } from 'node:stream';
import winston from 'winston';

/** A JSON winston logger at debug level that keeps what it writes in `lines` (one entry a log line). */
export function memoryLogger(): { logger: winston.Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = winston.createLogger({
    level: 'debug',
    format: winston.format.json(),
    transports: [
      new winston.transports.Stream({
        stream: new Writable({
          write(chunk: Buffer, _encoding, done) {
            lines.push(chunk.toString('utf8'));
            done();
          },
        }),
      }),
    ],
  });
  return { logger, lines };
}
