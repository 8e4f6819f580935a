// Starts the real smart-authz binary ($SMART_AUTHZ_BIN, built by cargo) on its built-in
// development configuration on a free port of 127.0.0.1, and mints its development tokens
// with `smart-authz token`.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';

import * as grpc from '@grpc/grpc-js';

export function binary() {
  const path = process.env.SMART_AUTHZ_BIN;
  if (!path || !existsSync(path)) {
    throw new Error('set SMART_AUTHZ_BIN to the smart-authz binary (cargo build)');
  }
  return path;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

export async function startServer() {
  const address = `127.0.0.1:${await freePort()}`;
  // Every SMART_AUTHZ_* variable is configuration to the service: pass none of the test's
  // own (SMART_AUTHZ_BIN), and turn the metrics listener off.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith('SMART_AUTHZ_')),
  );
  env.SMART_AUTHZ_TELEMETRY__METRICS_LISTEN = '';
  const child = spawn(binary(), ['serve', '--listen', address], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  const probe = new grpc.Client(address, grpc.credentials.createInsecure());
  try {
    await new Promise((resolve, reject) => {
      probe.waitForReady(Date.now() + 30_000, (error) =>
        error ? reject(new Error(`smart-authz did not start: ${error.message}\n${stderr}`)) : resolve(),
      );
    });
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  } finally {
    probe.close();
  }
  return {
    address,
    async stop() {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

export function mint(scope, patient) {
  const args = ['token', '--scope', scope];
  if (patient) args.push('--patient', patient);
  return execFileSync(binary(), args, { encoding: 'utf8' }).trim();
}
