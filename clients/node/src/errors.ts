import { status } from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';

/** Codes worth a retry, on another replica if there is one (docs/operations.md). */
const RETRYABLE: ReadonlySet<number> = new Set([status.UNAVAILABLE, status.DEADLINE_EXCEEDED]);

/**
 * The metadata by which the service marks a RESOURCE_EXHAUSTED worth a retry (gRPC's retry
 * pushback, gRFC A6): it was busy. Without it the code means a request larger than the
 * service takes, which no retry gets past.
 */
export const RETRY_PUSHBACK = 'grpc-retry-pushback-ms';

/**
 * The service gave no decision. Answer the FHIR request with an error (503 when
 * `retryable`), never by letting it through.
 */
export class AuthzError extends Error {
  readonly code: number;
  readonly details: string;
  /** How long the service asked to wait before a retry, when it was busy. */
  readonly retryAfterMs: number | undefined;

  constructor(code: number, details: string, retryAfterMs?: number) {
    super(`${status[code] ?? code}: ${details}`);
    this.name = 'AuthzError';
    this.code = code;
    this.details = details;
    this.retryAfterMs = retryAfterMs;
  }

  get retryable(): boolean {
    return (
      RETRYABLE.has(this.code) ||
      (this.code === status.RESOURCE_EXHAUSTED && this.retryAfterMs !== undefined)
    );
  }
}

/** The service, or the token issuer behind it, could not be reached in time, or was busy. */
export class AuthzUnavailable extends AuthzError {
  override name = 'AuthzUnavailable';
}

/** The request could not be read (INVALID_ARGUMENT). */
export class InvalidRequest extends AuthzError {
  override name = 'InvalidRequest';
}

function pushback(error: ServiceError): number | undefined {
  const [value] = error.metadata?.get(RETRY_PUSHBACK) ?? [];
  if (typeof value !== 'string' || !/^-?\d+$/.test(value)) return undefined;
  const delay = Number(value);
  // gRFC A6: a negative delay means "do not retry".
  return delay >= 0 ? delay : undefined;
}

export function fromServiceError(error: ServiceError): AuthzError {
  const code = typeof error.code === 'number' ? error.code : status.UNKNOWN;
  const details = error.details || error.message;
  const delay = code === status.RESOURCE_EXHAUSTED ? pushback(error) : undefined;
  if (RETRYABLE.has(code) || delay !== undefined) {
    return new AuthzUnavailable(code, details, delay);
  }
  if (code === status.INVALID_ARGUMENT) return new InvalidRequest(code, details);
  return new AuthzError(code, details);
}
