import { status } from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';

/** Codes worth a retry, on another replica if there is one (docs/operations.md). */
const RETRYABLE: ReadonlySet<number> = new Set([
  status.UNAVAILABLE,
  status.DEADLINE_EXCEEDED,
  status.RESOURCE_EXHAUSTED,
]);

/**
 * The service gave no decision. Answer the FHIR request with an error (503 when
 * `retryable`), never by letting it through.
 */
export class AuthzError extends Error {
  readonly code: number;
  readonly details: string;

  constructor(code: number, details: string) {
    super(`${status[code] ?? code}: ${details}`);
    this.name = 'AuthzError';
    this.code = code;
    this.details = details;
  }

  get retryable(): boolean {
    return RETRYABLE.has(this.code);
  }
}

/** The service, or the token issuer behind it, could not be reached in time. */
export class AuthzUnavailable extends AuthzError {
  override name = 'AuthzUnavailable';
}

/** The request could not be read (INVALID_ARGUMENT). */
export class InvalidRequest extends AuthzError {
  override name = 'InvalidRequest';
}

export function fromServiceError(error: ServiceError): AuthzError {
  const code = typeof error.code === 'number' ? error.code : status.UNKNOWN;
  const details = error.details || error.message;
  if (RETRYABLE.has(code)) return new AuthzUnavailable(code, details);
  if (code === status.INVALID_ARGUMENT) return new InvalidRequest(code, details);
  return new AuthzError(code, details);
}
