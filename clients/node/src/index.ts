/**
 * Typed Node.js client of smart-authz, the SMART on FHIR authorization decision service.
 *
 *     const authz = new AuthzClient('authz.internal:50051');
 *     const decision = await authz.check(token, 'GET', 'Observation?code=8867-4');
 *     if (decision.allowed) { ... apply decision.grants ... }
 *
 * The proto is loaded with the options that avoid proto-loader's traps: field names as
 * in the proto (a snake_case name is otherwise silently dropped), enums as their names,
 * int64 as numbers, and defaults on (a deny otherwise has no `decision` at all). An allow
 * is read only from DECISION_ALLOW. Errors of the service reject with AuthzError, never
 * with a decision.
 */

import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

import { AuthzError, fromServiceError } from './errors.js';
import { batchDecision, decision, filtered, introspection, isAllowedOutright } from './results.js';
import type { BatchDecision, Decision, Filtered, Introspection } from './results.js';

export * from './errors.js';
export type * from './results.js';
export { isAllow, isAllowedOutright, leavesNothingToApply } from './results.js';

/** proto-loader's options for this API; exported for callers that load it themselves. */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  enums: String,
  longs: Number,
  defaults: true,
  oneofs: true,
};

/** The gRPC metadata a proxy can hash on to send each token to one replica. */
export const ROUTING_KEY_HEADER = 'x-smart-authz-routing-key';

/**
 * The largest answer the client takes. gRPC's default, 4 MiB, is less than a
 * FilterResources answer can be: the body (up to `response_filter.max_body_bytes`) and a
 * verdict per entry.
 */
export const MAX_RECEIVE_BYTES = 64 * 1024 * 1024;

/** The first 16 hex digits of the bare token's SHA-256: stable per token, useless to replay. */
export function routingKey(token: string): string {
  const bare = token.slice(0, 7).toLowerCase() === 'bearer ' ? token.slice(7) : token;
  return createHash('sha256').update(bare.trim()).digest('hex').slice(0, 16);
}

/**
 * A resource: parsed JSON, or its JSON text or bytes (a Buffer or any typed array, an
 * ArrayBuffer). `null` or absent: no version given.
 */
export type ResourceJson = object | string | Uint8Array | ArrayBuffer | ArrayBufferView;

/** A FHIR request in structured form (the proto's FhirRequest, by its field names). */
export interface FhirRequest {
  interaction: string;
  resource_type?: string;
  id?: string;
  version_id?: string;
  operation?: string;
  compartment?: string;
  params?: { name: string; value: string }[];
  /** The query of a conditional create's If-None-Exist header, decided as the search it is. */
  if_none_exist?: string;
}

export interface CheckOptions {
  /** The resource as stored now. */
  stored?: ResourceJson | null;
  /** The resource as it would be written. */
  proposed?: ResourceJson | null;
  /** Request headers the FHIR server reads (method overrides are checked). */
  headers?: Record<string, string>;
  /**
   * The form-encoded body of a `POST [type]/_search`: its parameters are decided with the
   * query's, and the service refuses such a search without it.
   */
  searchBody?: string;
  requestId?: string;
}

export interface FilterOptions {
  /** Request headers the FHIR server read, as in CheckOptions. */
  headers?: Record<string, string>;
  /** The form-encoded body of the `POST [type]/_search` the answer is to. */
  searchBody?: string;
  requestId?: string;
}

/** One entry of a batch or transaction, as its HTTP line relative to the FHIR base. */
export interface BatchEntry {
  method: string;
  path: string;
  /**
   * The entry's request headers the FHIR server reads: a conditional create's
   * If-None-Exist (`Bundle.entry.request.ifNoneExist`), decided as the search it is, and
   * the method overrides.
   */
  headers?: Record<string, string>;
  stored?: ResourceJson | null;
  proposed?: ResourceJson | null;
}

export interface ClientOptions {
  /** The FHIR server asking (name or base URL), when the service decides for several. */
  fhirServer?: string;
  /**
   * The FHIR release its requests are in ('R4', 'R5', '4.0.1'...), when that server serves
   * several (docs/servers.md, "Naming the FHIR release"); introspection takes none.
   */
  fhirVersion?: string;
  /** Deadline of each call, in milliseconds (default 2000). */
  timeoutMs?: number;
  /** TLS (grpc.credentials.createSsl, with a client certificate for mutual TLS). */
  credentials?: grpc.ChannelCredentials;
  /** Send ROUTING_KEY_HEADER (default true). */
  sendRoutingKey?: boolean;
}

// Bytes are sent as they are: JSON.stringify would turn an ArrayBuffer or a DataView
// into `{}`, a resource other than the one given.
function jsonBytes(value: ResourceJson): Buffer {
  if (typeof value === 'string') return Buffer.from(value);
  if (value instanceof ArrayBuffer) return Buffer.from(value);
  if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  return Buffer.from(JSON.stringify(value));
}

function resource(value: ResourceJson | null | undefined): { json: Buffer } | null {
  return value === undefined || value === null ? null : { json: jsonBytes(value) };
}

const PROTO = fileURLToPath(new URL('./proto/smartauthz/v1/authz.proto', import.meta.url));

type Unary = (
  request: object,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, response: any) => void,
) => void;

export class AuthzClient {
  readonly #client: grpc.Client & Record<string, Unary>;
  readonly #fhirServer: string;
  readonly #fhirVersion: string;
  readonly #timeoutMs: number;
  readonly #sendRoutingKey: boolean;
  #closed = false;

  constructor(target = '127.0.0.1:50051', options: ClientOptions = {}) {
    const definition = protoLoader.loadSync(PROTO, LOADER_OPTIONS);
    const loaded = grpc.loadPackageDefinition(definition) as any;
    const Service = loaded.smartauthz.v1.AuthzService as grpc.ServiceClientConstructor;
    const credentials = options.credentials ?? grpc.credentials.createInsecure();
    this.#client = new Service(target, credentials, {
      'grpc.max_receive_message_length': MAX_RECEIVE_BYTES,
    }) as grpc.Client & Record<string, Unary>;
    this.#fhirServer = options.fhirServer ?? '';
    this.#fhirVersion = options.fhirVersion ?? '';
    this.#timeoutMs = options.timeoutMs ?? 2000;
    this.#sendRoutingKey = options.sendRoutingKey ?? true;
  }

  /** Closes the channel; every call after it is refused (an AuthzError, not retryable). */
  close(): void {
    this.#closed = true;
    this.#client.close();
  }

  #call(method: string, request: object, token: string): Promise<any> {
    if (this.#closed) {
      return Promise.reject(new AuthzError(grpc.status.FAILED_PRECONDITION, 'the client is closed'));
    }
    const metadata = new grpc.Metadata();
    if (this.#sendRoutingKey && token) metadata.set(ROUTING_KEY_HEADER, routingKey(token));
    const deadline = new Date(Date.now() + this.#timeoutMs);
    const unary = this.#client[method];
    if (!unary) throw new Error(`no RPC ${method}`);
    return new Promise((resolve, reject) => {
      unary.call(this.#client, request, metadata, { deadline }, (error, response) => {
        if (error) reject(fromServiceError(error));
        else resolve(response);
      });
    });
  }

  /** Decides one FHIR request given as its method and path relative to the FHIR base. */
  async check(
    token: string,
    method: string,
    path: string,
    options: CheckOptions = {},
  ): Promise<Decision> {
    const http = {
      method,
      path,
      headers: options.headers ?? {},
      body: Buffer.from(options.searchBody ?? '', 'utf8'),
    };
    return this.#check(token, { http }, options);
  }

  /** Decides one FHIR request given in structured form. */
  async checkFhir(token: string, fhir: FhirRequest, options: CheckOptions = {}): Promise<Decision> {
    // Dropped, they would leave the request decided without what the server reads (an
    // If-None-Exist search, a form body): a structured request carries its own fields.
    if (options.headers !== undefined || options.searchBody !== undefined) {
      throw new TypeError(
        'headers and searchBody go with check(method, path); a structured request carries its own fields (if_none_exist)',
      );
    }
    return this.#check(token, { fhir }, options);
  }

  async #check(token: string, request: object, options: CheckOptions): Promise<Decision> {
    const message = {
      access_token: token,
      ...request,
      stored: resource(options.stored),
      proposed: resource(options.proposed),
      fhir_server: this.#fhirServer,
      fhir_version: this.#fhirVersion,
      request_id: options.requestId ?? '',
    };
    return decision(await this.#call('CheckAccess', message, token));
  }

  /**
   * Whether the request is allowed outright, with nothing left for the FHIR server to
   * enforce ({@link isAllowedOutright}): a patient's read with the stored resource given,
   * say. False for an allow that carries a compartment, a filter, an exclusion or an
   * obligation, as every user/ and system/ grant does: use `check` and apply its grants.
   * Rejects when the service gives no decision.
   */
  async isAllowed(
    token: string,
    method: string,
    path: string,
    options: CheckOptions = {},
  ): Promise<boolean> {
    return isAllowedOutright(await this.check(token, method, path, options));
  }

  /** Decides every entry of a batch or transaction; a transaction stands or falls whole. */
  async checkBatch(
    token: string,
    entries: readonly BatchEntry[],
    options: { transaction: boolean; requestId?: string },
  ): Promise<BatchDecision> {
    const message = {
      access_token: token,
      bundle_type: options.transaction ? 'BUNDLE_TYPE_TRANSACTION' : 'BUNDLE_TYPE_BATCH',
      entries: entries.map((entry) => ({
        http: { method: entry.method, path: entry.path, headers: entry.headers ?? {} },
        stored: resource(entry.stored),
        proposed: resource(entry.proposed),
      })),
      fhir_server: this.#fhirServer,
      fhir_version: this.#fhirVersion,
      request_id: options.requestId ?? '',
    };
    return batchDecision(await this.#call('BatchCheckAccess', message, token));
  }

  /**
   * Judges what the FHIR server answered to a request (a Bundle or one resource,
   * uncompressed JSON) entry by entry, as reads of each resource: send back `body` when
   * `allowed`, else 403 and nothing of the answer. The request's headers and search body
   * are given as to `check` (a POST search's answer is judged with its body's parameters).
   */
  async filterResources(
    token: string,
    method: string,
    path: string,
    response: ResourceJson,
    options: FilterOptions = {},
  ): Promise<Filtered> {
    const message = {
      access_token: token,
      http: {
        method,
        path,
        headers: options.headers ?? {},
        body: Buffer.from(options.searchBody ?? '', 'utf8'),
      },
      response: jsonBytes(response),
      fhir_server: this.#fhirServer,
      fhir_version: this.#fhirVersion,
      request_id: options.requestId ?? '',
    };
    return filtered(await this.#call('FilterResources', message, token));
  }

  /** Verifies or introspects a token (RFC 7662 with the SMART launch context). */
  async introspect(token: string, options: { requestId?: string } = {}): Promise<Introspection> {
    const message = { token, fhir_server: this.#fhirServer, request_id: options.requestId ?? '' };
    return introspection(await this.#call('IntrospectToken', message, token));
  }
}
