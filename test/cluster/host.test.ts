import { connect, createServer, type Server } from 'node:net';
import { describe, expect, it } from 'vitest';
import { listeningPorts } from './host.ts';
import { freePort } from './net.ts';

function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      resolve(server);
    });
  });
}

describe('listeningPorts', () => {
  it('lists a port while this process listens on it, and not before or after', async () => {
    const port = await freePort();
    expect(listeningPorts(process.pid).has(port)).toBe(false);
    const server = await listen(port);
    try {
      expect(listeningPorts(process.pid).has(port)).toBe(true);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
    expect(listeningPorts(process.pid).has(port)).toBe(false);
  });

  it('does not list a port this process only connects to', async () => {
    const server = await listen(0);
    const address = server.address();
    const port = typeof address === 'object' && address !== null ? address.port : 0;
    const client = connect(port, '127.0.0.1');
    await new Promise((resolve) => client.once('connect', resolve));
    try {
      // The server's port is listed once (the listening socket), the client's ephemeral port never.
      expect(listeningPorts(process.pid).has(client.localPort ?? 0)).toBe(false);
      expect(listeningPorts(process.pid).has(port)).toBe(true);
    } finally {
      client.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('is empty for a process that does not exist', () => {
    expect(listeningPorts(2 ** 22 + 1).size).toBe(0);
  });
});
