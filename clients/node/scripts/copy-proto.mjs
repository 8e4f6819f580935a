// The client loads the service's own proto at run time (proto-loader): the build copies it
// from the repository ($SMART_AUTHZ_PROTO_DIR, else ../../proto) into dist/, so the
// package carries the contract it was built against and nothing is copied by hand.
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(process.env.SMART_AUTHZ_PROTO_DIR ?? join(here, '../../../proto'));
const proto = 'smartauthz/v1/authz.proto';
if (!existsSync(join(root, proto))) {
  console.error(`${join(root, proto)} not found: set SMART_AUTHZ_PROTO_DIR`);
  process.exit(1);
}
const target = join(here, '../dist/proto', proto);
mkdirSync(dirname(target), { recursive: true });
copyFileSync(join(root, proto), target);
