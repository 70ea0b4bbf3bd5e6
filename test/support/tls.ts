import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** PEM-encoded TLS material generated for this test run by test/run-tests.ts. */
export interface TestTls {
  /** The server's private key (PKCS#8). */
  key: string;
  /** The server certificate: SANs localhost, 127.0.0.1 and ::1, signed by `ca`. */
  cert: string;
  /** The run's CA certificate, which the test processes already trust through NODE_EXTRA_CA_CERTS. */
  ca: string;
}

/** Reads the TLS material that the test runner generated into TEST_TLS_DIR. */
export function loadTestTls(): TestTls {
  const dir = process.env.TEST_TLS_DIR;
  if (!dir) {
    throw new Error(
      'TEST_TLS_DIR is not set: run tests through `npm test` (or `npx tsx test/run-tests.ts [files...]`), ' +
        'which generates a test CA and server certificate and makes the test processes trust it',
    );
  }
  const read = (name: string) => readFileSync(join(dir, name), 'utf8');
  return { key: read('server-key.pem'), cert: read('server-cert.pem'), ca: read('ca.pem') };
}
