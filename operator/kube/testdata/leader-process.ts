/**
 * A stand-alone elector for the crash test in leader.int.test.ts: the test runs it as a real child process and
 * SIGKILLs it while it leads. Prints `LEADING` when it starts leading and `STOPPED` when it stops; SIGTERM stops it
 * cleanly (releasing the Lease).
 *
 * Usage: node leader-process.ts <kubeconfig> <namespace> <lease> <identity> <leaseMs> <renewDeadlineMs> <retryMs>
 */
import { KubeConfig } from '@kubernetes/client-node';
import winston from 'winston';
import { LeaderElector } from '../leader.ts';

const [kubeconfig, namespace, name, identity, leaseMs, renewMs, retryMs] = process.argv.slice(2);
if (
  kubeconfig === undefined ||
  namespace === undefined ||
  name === undefined ||
  identity === undefined ||
  leaseMs === undefined ||
  renewMs === undefined ||
  retryMs === undefined
) {
  process.stderr.write(
    'usage: leader-process.ts <kubeconfig> <namespace> <lease> <identity> <leaseMs> <renewMs> <retryMs>\n',
  );
  process.exit(2);
}

const kubeConfig = new KubeConfig();
kubeConfig.loadFromFile(kubeconfig);
const elector = new LeaderElector({
  kubeConfig,
  namespace,
  name,
  identity,
  leaseDurationMs: Number(leaseMs),
  renewDeadlineMs: Number(renewMs),
  retryPeriodMs: Number(retryMs),
  logger: winston.createLogger({
    level: 'warn',

    transports: [new winston.transports.Stream({ stream: process.stderr })],
  }),
  onStartedLeading: () => {
    process.stdout.write('LEADING\n');
  },
  onStoppedLeading: () => {
    process.stdout.write('STOPPED\n');
  },
});
process.once('SIGTERM', () => {
  elector.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
elector.start();
