import type { AddressInfo, Server } from 'node:net';

/** Listens on 127.0.0.1 (a free port unless one is given) and resolves with the port once bound. */
export function listenOnLoopback(server: Server, port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}
