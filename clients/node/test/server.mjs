// Starts the real smart-authz binary ($SMART_AUTHZ_BIN, built by cargo) on its built-in
// development configuration on 127.0.0.1, and mints its development tokens
// with `smart-authz token`.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

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

/** The address of the JSON "smart-authz serving" log line, if `line` is it. */
function servingAddress(line) {
  try {
    const record = JSON.parse(line);
    return record.message === 'smart-authz serving' ? record.listen : null;
  } catch {
    return null;
  }
}

// The service listens on a port the kernel picks and announces it in its log: a port probed
// free first could be taken by another test's listener before the service binds it. It
// answers on a Unix socket too (`unix_listen`): `socket`.
export async function startServer() {
  const socketDir = mkdtempSync(join(tmpdir(), 'smart-authz-'));
  const socket = join(socketDir, 'grpc.sock');
  // Every SMART_AUTHZ_* variable is configuration to the service: pass none of the test's
  // own (SMART_AUTHZ_BIN), and turn the metrics listener off.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith('SMART_AUTHZ_')),
  );
  env.SMART_AUTHZ_TELEMETRY__METRICS_LISTEN = '';
  env.SMART_AUTHZ_LOG__FORMAT = 'json';
  env.SMART_AUTHZ_UNIX_LISTEN = socket;
  delete env.RUST_LOG;
  const child = spawn(binary(), ['serve', '--listen', '127.0.0.1:0'], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  let address;
  try {
    address = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no "smart-authz serving" line in 30 s')), 30_000);
      const lines = createInterface({ input: child.stderr });
      // Read to the end: the pipe is drained for the life of the service.
      lines.on('line', (line) => {
        stderr += `${line}\n`;
        const announced = servingAddress(line);
        if (announced) {
          clearTimeout(timer);
          resolve(announced);
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`smart-authz exited (${code}) before serving`));
      });
    });
  } catch (error) {
    child.kill('SIGKILL');
    rmSync(socketDir, { recursive: true, force: true });
    throw new Error(`smart-authz did not start: ${error.message}\n${stderr}`);
  }
  return {
    address,
    socket,
    async stop() {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
      rmSync(socketDir, { recursive: true, force: true });
    },
  };
}

export function mint(scope, patient, fhirUser) {
  const args = ['token', '--scope', scope];
  if (patient) args.push('--patient', patient);
  if (fhirUser) args.push('--fhir-user', fhirUser);
  return execFileSync(binary(), args, { encoding: 'utf8' }).trim();
}
