/**
 * A throw-away CA and one server certificate it signs (SANs localhost, 127.0.0.1, ::1; valid for a day),
 * generated at run time for the tests and the benchmark, and written only to a fresh temporary directory.
 */
import { webcrypto } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

type X509 = typeof import('@peculiar/x509');

export interface TlsMaterial {
  caCertPem: string;
  serverKeyPem: string;
  serverCertPem: string;
}

const keyAlgorithm: webcrypto.EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
const signingAlgorithm: webcrypto.EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };

async function loadX509(): Promise<X509> {
  // @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata API loaded first.
  await import('reflect-metadata');
  return import('@peculiar/x509');
}

export async function generateTlsMaterial(): Promise<TlsMaterial> {
  const x509 = await loadX509();
  x509.cryptoProvider.set(webcrypto);
  const notBefore = new Date(Date.now() - 5 * 60 * 1000);
  const notAfter = new Date(Date.now() + 24 * 60 * 60 * 1000);

  const caKeys = await webcrypto.subtle.generateKey(keyAlgorithm, true, ['sign', 'verify']);
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: 'CN=token-broker bench CA (generated per run)',
    notBefore,
    notAfter,
    keys: caKeys,
    signingAlgorithm,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });

  const serverKeys = await webcrypto.subtle.generateKey(keyAlgorithm, true, ['sign', 'verify']);
  const serverCert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: 'CN=localhost',
    issuer: caCert.subject,
    notBefore,
    notAfter,
    publicKey: serverKeys.publicKey,
    signingKey: caKeys.privateKey,
    signingAlgorithm,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        { type: 'dns', value: 'localhost' },
        { type: 'ip', value: '127.0.0.1' },
        { type: 'ip', value: '::1' },
      ]),
      await x509.SubjectKeyIdentifierExtension.create(serverKeys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });

  const serverKeyDer = await webcrypto.subtle.exportKey('pkcs8', serverKeys.privateKey);
  return {
    caCertPem: `${caCert.toString('pem')}\n`,
    serverCertPem: `${serverCert.toString('pem')}\n`,
    serverKeyPem: `${x509.PemConverter.encode(serverKeyDer, 'PRIVATE KEY')}\n`,
  };
}

/** Writes the material where test/support/tls.ts `loadTestTls()` reads it. */
export async function writeTlsMaterial(dir: string, material: TlsMaterial): Promise<void> {
  await writeFile(join(dir, 'ca.pem'), material.caCertPem, { mode: 0o644 });
  await writeFile(join(dir, 'server-cert.pem'), material.serverCertPem, { mode: 0o644 });
  await writeFile(join(dir, 'server-key.pem'), material.serverKeyPem, { mode: 0o600 });
}

/** A positive 128-bit serial number, hex encoded (the top bit cleared so DER keeps it positive). */
function randomSerial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return Buffer.from(bytes).toString('hex');
}
