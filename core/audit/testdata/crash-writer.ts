/**
 * A child writer for the crash-recovery test: opens the log, runs `concurrency` appenders forever, and prints
 * `ack <seq> <id>` only after each append resolved (i.e. after fdatasync). The parent SIGKILLs it at random.
 */
import { AuditLog } from '../log.ts';
import { parseSignerKey } from '../note.ts';

const [path, signerKey, origin, round, concurrencyText] = process.argv.slice(2) as [
  string,
  string,
  string,
  string,
  string,
];
const log = await AuditLog.open({
  path,
  origin,
  signer: parseSignerKey(signerKey),
  checkpointIntervalMs: 5,
  heartbeatIntervalMs: 0,
});
process.stdout.write('ready\n');
let n = 0;
async function appender(): Promise<void> {
  for (;;) {
    const id = `r${round}-${n++}`;
    const receipt = await log.append({
      type: 'grant-approved',
      grant: { namespace: 'ns', name: 'g', uid: id, resourceVersion: '1' },
      actor: 'bob',
      reason: 'crash-test',
    });
    process.stdout.write(`ack ${receipt.seq} ${id}\n`);
  }
}
await Promise.all(Array.from({ length: Number(concurrencyText) }, () => appender()));
