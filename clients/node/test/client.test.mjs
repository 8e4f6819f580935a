// The client against the real service: typed answers, allows only from DECISION_ALLOW,
// errors rejected rather than read as decisions.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

import {
  AuthzClient,
  AuthzUnavailable,
  InvalidRequest,
  fromServiceError,
  isAllow,
  routingKey,
} from '../dist/index.js';
import { freePort, mint, startServer } from './server.mjs';

const VITALS = 'http://terminology.hl7.org/CodeSystem/observation-category|vital-signs';

function observation(patient, category = 'vital-signs') {
  return {
    resourceType: 'Observation',
    id: 'o1',
    status: 'final',
    category: [
      {
        coding: [
          { system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: category },
        ],
      },
    ],
    code: { text: 'heart rate' },
    subject: { reference: `Patient/${patient}` },
  };
}

let server;
let authz;

before(async () => {
  server = await startServer();
  authz = new AuthzClient(server.address);
});

after(async () => {
  authz?.close();
  await server?.stop();
});

test('a patient search is allowed with its compartment as a typed constraint', async () => {
  const token = mint('patient/Observation.rs launch/patient', '123');
  const decision = await authz.check(token, 'GET', 'Observation?code=8867-4');
  assert.equal(decision.allowed, true);
  assert.equal(decision.reason, 'REASON_GRANTED');
  const [grant] = decision.grants;
  assert.equal(grant.scope, 'patient/Observation.rs');
  assert.equal(grant.context, 'SCOPE_CONTEXT_PATIENT');
  assert.equal(grant.compartment, 'Patient/123');
  assert.ok(grant.compartmentParams.includes('subject'));
  assert.equal(grant.obligation, 'OBLIGATION_NONE');
  assert.equal(decision.subject.patient, '123');
  assert.equal(typeof decision.subject.expiresAt, 'number', 'int64 arrives as a number');
});

test('the service answers the same on its Unix socket', async () => {
  const token = mint('patient/Observation.rs launch/patient', '123');
  const local = new AuthzClient(`unix:${server.socket}`);
  try {
    for (const [path, allowed] of [
      ['Observation?code=8867-4', true],
      ['Observation?patient=456', false],
    ]) {
      const overUnix = await local.check(token, 'GET', path);
      const overTcp = await authz.check(token, 'GET', path);
      assert.equal(overUnix.allowed, allowed, path);
      assert.deepEqual([overUnix.reason, overUnix.message], [overTcp.reason, overTcp.message]);
    }
  } finally {
    local.close();
  }
});

test('a POST search is decided on its body', async () => {
  const token = mint('patient/Observation.rs', '123');
  const own = await authz.check(token, 'POST', 'Observation/_search', { searchBody: 'code=x' });
  assert.equal(own.allowed, true);
  const other = await authz.check(token, 'POST', 'Observation/_search', {
    searchBody: 'patient=456',
  });
  assert.equal(other.allowed, false);
  await assert.rejects(authz.check(token, 'POST', 'Observation/_search'), /form body/);
});

test('a deny is read as a deny, where proto-loader defaults would drop it', async () => {
  const token = mint('patient/Observation.rs', '123');
  const decision = await authz.check(token, 'GET', 'Patient/456/Observation');
  assert.equal(decision.allowed, false);
  assert.equal(decision.reason, 'REASON_OUTSIDE_COMPARTMENT');
  assert.deepEqual(decision.grants, []);

  // The traps the client closes, shown with proto-loader's default options: a deny has
  // no `decision` at all, so `decision !== 'DECISION_DENY'` would let it through; and a
  // snake_case field name is silently dropped, so the token never reaches the service.
  const definition = protoLoader.loadSync(
    new URL('../dist/proto/smartauthz/v1/authz.proto', import.meta.url).pathname,
    { enums: String },
  );
  const { AuthzService } = grpc.loadPackageDefinition(definition).smartauthz.v1;
  const raw = new AuthzService(server.address, grpc.credentials.createInsecure());
  const call = (message) =>
    new Promise((resolve, reject) =>
      raw.CheckAccess(message, (error, response) => (error ? reject(error) : resolve(response))),
    );
  const denied = await call({
    accessToken: token,
    http: { method: 'GET', path: 'Patient/456/Observation' },
  });
  assert.equal(denied.decision, undefined);
  assert.notEqual(denied.decision, 'DECISION_DENY', 'the naive check would allow this');
  assert.equal(isAllow(denied.decision), false);
  const dropped = await call({
    access_token: token,
    http: { method: 'GET', path: 'Observation/o1' },
  });
  assert.equal(dropped.reason, 'REASON_TOKEN_MISSING');
  raw.close();
});

test('isAllowed is true only for an allow with nothing left to enforce', async () => {
  // Allowed, but the FHIR server must still apply the user's permissions.
  const user = mint('user/Observation.rs', null, 'Practitioner/7');
  const decided = await authz.check(user, 'GET', 'Observation/o1', { stored: observation('123') });
  assert.equal(decided.allowed, true);
  assert.equal(decided.grants[0].obligation, 'OBLIGATION_USER_PERMISSIONS');
  assert.equal(await authz.isAllowed(user, 'GET', 'Observation/o1', { stored: observation('123') }), false);
  // A search is allowed within the patient's compartment, which the server must apply.
  const patient = mint('patient/Observation.rs', '123');
  assert.equal((await authz.check(patient, 'GET', 'Observation')).allowed, true);
  assert.equal(await authz.isAllowed(patient, 'GET', 'Observation'), false);
  // A Binary not given: only its answer can show whose it is.
  const binary = mint('patient/Binary.r', '123');
  const read = await authz.check(binary, 'GET', 'Binary/b1');
  assert.equal(read.allowed, true);
  assert.equal(read.grants[0].answerMustBeRead, true);
  assert.equal(await authz.isAllowed(binary, 'GET', 'Binary/b1'), false);
  // A public endpoint: nothing to apply.
  assert.equal(await authz.isAllowed('', 'GET', 'metadata'), true);
});

test('the stored resource is judged', async () => {
  const token = mint('patient/Observation.rs', '123');
  assert.equal(await authz.isAllowed(token, 'GET', 'Observation/o1', { stored: observation('123') }), true);
  assert.equal(await authz.isAllowed(token, 'GET', 'Observation/o1', { stored: observation('456') }), false);
  assert.equal(
    await authz.isAllowed(token, 'GET', 'Observation/o1', {
      stored: JSON.stringify(observation('456')),
    }),
    false,
  );
});

test('a resource given as bytes of any kind is sent as it is, and null is no resource', async () => {
  const token = mint('patient/Observation.rs', '123');
  const bytes = (patient) => new TextEncoder().encode(JSON.stringify(observation(patient)));
  for (const view of [
    (array) => array.buffer,
    (array) => new DataView(array.buffer),
    (array) => Buffer.from(array),
  ]) {
    assert.equal(await authz.isAllowed(token, 'GET', 'Observation/o1', { stored: view(bytes('123')) }), true);
    assert.equal(await authz.isAllowed(token, 'GET', 'Observation/o1', { stored: view(bytes('456')) }), false);
  }
  const absent = await authz.check(token, 'GET', 'Observation/o1');
  const none = await authz.check(token, 'GET', 'Observation/o1', { stored: null, proposed: null });
  assert.equal(none.allowed, absent.allowed);
  assert.equal(none.reason, absent.reason);
  assert.deepEqual(none.grants, absent.grants);
});

test('a closed client refuses every call, as an error that is not retried', async () => {
  const closed = new AuthzClient(server.address);
  const token = mint('patient/Observation.rs', '123');
  assert.equal((await closed.check(token, 'GET', 'Observation?code=x')).allowed, true);
  closed.close();
  await assert.rejects(closed.check(token, 'GET', 'Observation?code=x'), (error) => {
    assert.equal(error.code, grpc.status.FAILED_PRECONDITION);
    assert.equal(error.retryable, false);
    assert.match(error.message, /closed/);
    return true;
  });
});

test('a granular scope comes back as a typed filter', async () => {
  const token = mint(`patient/Observation.rs?category=${VITALS}`, '123');
  const decision = await authz.check(token, 'GET', 'Observation');
  assert.equal(decision.allowed, true);
  assert.deepEqual(decision.grants[0].filters, [{ param: 'category', values: [VITALS] }]);
  const laboratory = observation('123', 'laboratory');
  assert.equal((await authz.check(token, 'GET', 'Observation/o1', { stored: laboratory })).allowed, false);
});

test('a transaction with one bad entry is refused whole', async () => {
  const token = mint('patient/Observation.crs', '123');
  const entries = [
    { method: 'POST', path: 'Observation', proposed: observation('123') },
    { method: 'POST', path: 'Observation', proposed: observation('456') },
  ];
  const transaction = await authz.checkBatch(token, entries, { transaction: true, requestId: 'tx-1' });
  assert.equal(transaction.allowed, false);
  assert.deepEqual(transaction.entries.map((entry) => entry.allowed), [true, false]);
  assert.equal(transaction.requestId, 'tx-1');
  const batch = await authz.checkBatch(token, entries.slice(0, 1), { transaction: false });
  assert.equal(batch.allowed, true);
});

test('introspection reads the launch context', async () => {
  const token = mint('patient/*.rs launch/patient openid fhirUser', '123');
  const introspection = await authz.introspect(token, { requestId: 'i-1' });
  assert.equal(introspection.active, true);
  assert.equal(introspection.patient, '123');
  assert.equal(introspection.source, 'TOKEN_SOURCE_LOCAL_JWT');
  assert.equal(introspection.requestId, 'i-1');
  assert.ok(introspection.iat > 0 && introspection.exp > introspection.iat);
  assert.deepEqual(
    introspection.scopes.map((parsed) => [parsed.scope, parsed.kind]),
    [
      ['patient/*.rs', 'resource'],
      ['launch/patient', 'launch context'],
      ['openid', 'identity'],
      ['fhirUser', 'identity'],
    ],
  );
  assert.equal(introspection.scopes[0].canonical, 'patient/*.rs');
  assert.equal(introspection.scopes[0].error, null);
  assert.equal((await authz.introspect('not-a-token')).active, false);
});

test('the request id is echoed and a bad one rejects', async () => {
  const token = mint('patient/Observation.rs', '123');
  const decision = await authz.check(token, 'GET', 'Observation/o1', { requestId: 'req-9' });
  assert.equal(decision.requestId, 'req-9');
  await assert.rejects(
    authz.check(token, 'GET', 'Observation/o1', { requestId: 'two words' }),
    InvalidRequest,
  );
});

test('the FHIR release is sent with every decision', async () => {
  const token = mint('patient/Observation.rs', '123');
  // The development configuration serves R4 alone: naming it passes, naming another is
  // refused, which shows the field reaches the service.
  const r4 = new AuthzClient(server.address, { fhirVersion: '4.0.1' });
  const r5 = new AuthzClient(server.address, { fhirVersion: 'R5' });
  try {
    assert.equal((await r4.check(token, 'GET', 'Observation?code=x')).allowed, true);
    await assert.rejects(r5.check(token, 'GET', 'Observation?code=x'), InvalidRequest);
    await assert.rejects(
      r5.checkBatch(token, [{ method: 'GET', path: 'Observation?code=x' }], {
        transaction: false,
      }),
      InvalidRequest,
    );
    await assert.rejects(
      r5.filterResources(token, 'GET', 'Observation/o1', observation('123')),
      InvalidRequest,
    );
    // Introspection decides nothing and takes no release.
    assert.equal((await r5.introspect(token)).active, true);
  } finally {
    r4.close();
    r5.close();
  }
});

test('a batch entry carries its If-None-Exist', async () => {
  const writer = mint('patient/Observation.crs', '123');
  const create = { method: 'POST', path: 'Observation', proposed: observation('123') };
  assert.equal((await authz.checkBatch(writer, [create], { transaction: true })).allowed, true);
  // The server would run this search first, and answer with another patient's match.
  const conditional = { ...create, headers: { 'If-None-Exist': 'subject=Patient/456' } };
  const refused = await authz.checkBatch(writer, [conditional], { transaction: true });
  assert.equal(refused.allowed, false);
});

test("an answer to a POST search is judged with the search's body", async () => {
  const token = mint('patient/Observation.rs', '123');
  const answer = {
    resourceType: 'Bundle',
    type: 'searchset',
    entry: [{ resource: observation('123'), search: { mode: 'match' } }],
  };
  const ours = await authz.filterResources(token, 'POST', 'Observation/_search', answer, {
    searchBody: 'code=8867-4',
  });
  assert.equal(ours.allowed, true);
  const theirs = await authz.filterResources(token, 'POST', 'Observation/_search', answer, {
    searchBody: 'subject=Patient/456',
  });
  assert.equal(theirs.allowed, false);
  assert.equal(theirs.body, null);
});

test('RESOURCE_EXHAUSTED is retryable only when the service was busy', async () => {
  const failure = (pushback) => {
    const metadata = new grpc.Metadata();
    if (pushback !== undefined) metadata.set('grpc-retry-pushback-ms', pushback);
    return { code: grpc.status.RESOURCE_EXHAUSTED, details: 'busy', metadata };
  };
  const busy = fromServiceError(failure('1000'));
  assert.ok(busy instanceof AuthzUnavailable);
  assert.equal(busy.retryable, true);
  assert.equal(busy.retryAfterMs, 1000);
  assert.equal(fromServiceError(failure(undefined)).retryable, false);
  assert.equal(fromServiceError(failure('-1')).retryable, false);
  // A request larger than the service takes: no retry gets it through.
  const token = mint('patient/Observation.rs', '123');
  const large = { ...observation('123'), note: [{ text: 'x'.repeat(5 * 1024 * 1024) }] };
  await assert.rejects(authz.check(token, 'GET', 'Observation/o1', { stored: large }), (error) => {
    assert.equal(error.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.equal(error.retryable, false);
    return true;
  });
});

test('a missing or bad token is a deny with its reason', async () => {
  assert.equal((await authz.check('', 'GET', 'Observation/o1')).reason, 'REASON_TOKEN_MISSING');
  const refused = await authz.check('not.a.jwt', 'GET', 'Observation/o1');
  assert.equal(refused.allowed, false);
  assert.equal(refused.reason, 'REASON_TOKEN_MALFORMED');
});

test('an unreachable service rejects instead of deciding', async () => {
  const token = mint('patient/Observation.rs', '123');
  const client = new AuthzClient(`127.0.0.1:${await freePort()}`, { timeoutMs: 500 });
  try {
    await assert.rejects(client.check(token, 'GET', 'Observation/o1'), (error) => {
      assert.ok(error instanceof AuthzUnavailable);
      assert.equal(error.retryable, true);
      return true;
    });
  } finally {
    client.close();
  }
});

test('a structured request is decided too', async () => {
  const token = mint('patient/Observation.rs', '123');
  const decision = await authz.checkFhir(token, {
    interaction: 'INTERACTION_SEARCH_TYPE',
    resource_type: 'Observation',
    params: [{ name: 'code', value: '8867-4' }],
  });
  assert.equal(decision.allowed, true);
  // Headers would be dropped: the structured request has its own field.
  await assert.rejects(
    authz.checkFhir(token, { interaction: 'INTERACTION_SEARCH_TYPE', resource_type: 'Observation' }, {
      headers: { 'If-None-Exist': 'identifier=x' },
    }),
    TypeError,
  );
  const writer = mint('patient/Observation.crs', '123');
  const plain = await authz.checkFhir(
    writer,
    { interaction: 'INTERACTION_CREATE', resource_type: 'Observation' },
    { proposed: observation('123') },
  );
  assert.equal(plain.allowed, true);
  const create = await authz.checkFhir(
    writer,
    { interaction: 'INTERACTION_CREATE', resource_type: 'Observation', if_none_exist: 'subject=Patient/456' },
    { proposed: observation('123') },
  );
  assert.equal(create.allowed, false);
});

test('the routing key ignores the Bearer prefix and hides the token', () => {
  const key = routingKey('Bearer abc.def.ghi');
  assert.equal(key, routingKey('abc.def.ghi'));
  assert.equal(key.length, 16);
  assert.ok(!key.includes('abc'));
});

function searchset(...resources) {
  return {
    resourceType: 'Bundle',
    type: 'searchset',
    total: resources.length,
    entry: resources.map((resource) => ({
      fullUrl: `https://fhir.example/${resource.resourceType}/${resource.id}`,
      resource,
      search: { mode: 'match' },
    })),
  };
}

test('an answer loses what the token may not read', async () => {
  const token = mint('patient/Observation.rs launch/patient', '123');
  const ours = { ...observation('123'), id: 'o-123' };
  const theirs = { ...observation('456'), id: 'o-456' };
  const answer = await authz.filterResources(
    token,
    'GET',
    'Observation?code=8867-4',
    searchset(ours, theirs),
    { requestId: 'f-1' },
  );
  assert.equal(answer.allowed, true);
  assert.equal(answer.filtered, true);
  assert.equal(answer.withheld, 1);
  assert.deepEqual(
    answer.entries.map((entry) => [entry.reference, entry.kept]),
    [
      ['Observation/o-123', true],
      ['Observation/o-456', false],
    ],
  );
  assert.equal(answer.entries[1].reason, 'REASON_OUTSIDE_COMPARTMENT');
  assert.equal(answer.requestId, 'f-1');
  const text = answer.body.toString();
  assert.ok(!text.includes('456'), text);
  const body = JSON.parse(text);
  assert.equal(body.total, undefined);
  assert.deepEqual(
    body.entry.filter((entry) => entry.search.mode === 'match').map((entry) => entry.resource.id),
    ['o-123'],
  );
});

test('a single foreign resource is a deny with no body', async () => {
  const token = mint('patient/Observation.rs', '123');
  const answer = await authz.filterResources(
    token,
    'GET',
    'Observation/o1',
    JSON.stringify(observation('456')),
  );
  assert.equal(answer.allowed, false);
  assert.equal(answer.reason, 'REASON_OUTSIDE_COMPARTMENT');
  assert.equal(answer.body, null);
});

test('a system token gets the answer unread', async () => {
  const token = mint('system/*.rs');
  const raw = Buffer.from(JSON.stringify(searchset(observation('123'), observation('456'))));
  const answer = await authz.filterResources(token, 'GET', 'Observation', raw);
  assert.equal(answer.allowed, true);
  assert.equal(answer.filtered, false);
  assert.deepEqual(answer.entries, []);
  assert.ok(answer.body.equals(raw));
});
