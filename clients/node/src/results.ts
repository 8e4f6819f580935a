// The answers of the service as typed, read-only values. Enum values are their proto names
// ("REASON_GRANTED"); only `allowed` decides, and it is true for DECISION_ALLOW alone.

/** A granular filter: the resource must match `param` on any of `values`. */
export interface Filter {
  readonly param: string;
  readonly values: readonly string[];
}

/**
 * One scope that grants the request, and what the FHIR server must still enforce. The
 * grants of a decision are alternatives: the request is allowed under any one of them.
 */
export interface Grant {
  readonly scope: string;
  readonly context: string;
  /** The compartment results must be limited to, e.g. "Patient/123"; null when none. */
  readonly compartment: string | null;
  readonly compartmentParams: readonly string[];
  /** All must hold (AND); any value of each (OR). */
  readonly filters: readonly Filter[];
  readonly resourceTypes: readonly string[];
  readonly obligation: string;
  readonly excludeOtherPatientsVia: readonly string[];
  /**
   * Each resource of the answer must be read for a reference to another patient (a
   * patient/ grant on a type like Binary or Bundle the service did not see).
   */
  readonly answerMustBeRead: boolean;
}

/** Who is asking, from the verified token. */
export interface Subject {
  readonly clientId: string;
  readonly sub: string;
  readonly fhirUser: string | null;
  readonly patient: string | null;
  readonly encounter: string | null;
  readonly scope: string;
  readonly expiresAt: number;
}

export interface IgnoredScope {
  readonly scope: string;
  readonly reason: string;
}

/** The answer to one request. */
export interface Decision {
  /** True only when the service answered DECISION_ALLOW. */
  readonly allowed: boolean;
  readonly reason: string;
  readonly message: string;
  readonly grants: readonly Grant[];
  readonly subject: Subject | null;
  readonly ignoredScopes: readonly IgnoredScope[];
  /**
   * For _include/_revinclude: the types some scope can read ("*" for all). Empty for a
   * request with _include or _revinclude means no type is readable: return no included
   * resource.
   */
  readonly includeReadableTypes: readonly string[];
  readonly requestId: string;
}

/** The answer to a batch or transaction: `allowed` only when every entry is. */
export interface BatchDecision {
  readonly allowed: boolean;
  readonly reason: string;
  readonly message: string;
  readonly entries: readonly Decision[];
  readonly subject: Subject | null;
  readonly requestId: string;
}

/** The verdict on one entry of an answer (on the resource, for a single resource). */
export interface EntryVerdict {
  /** Position in the answer's Bundle.entry (0 for a single resource). */
  readonly index: number;
  /** "Type/id" of the entry's resource, when it has both. */
  readonly reference: string | null;
  readonly mode: string;
  /** True only when the entry stays in the answer. */
  readonly kept: boolean;
  readonly reason: string;
  readonly message: string;
}

/**
 * What of the FHIR server's answer may go back to the app. When `allowed`, send `body` (the
 * filtered JSON, or the answer as it was when nothing was withheld); otherwise answer 403
 * and send nothing of the answer: `body` is null.
 */
export interface Filtered {
  readonly allowed: boolean;
  readonly reason: string;
  readonly message: string;
  /** False when the grant left nothing to check and the answer passed unread. */
  readonly filtered: boolean;
  readonly entries: readonly EntryVerdict[];
  readonly withheld: number;
  readonly body: Buffer | null;
  readonly subject: Subject | null;
  readonly requestId: string;
}

/** One granted scope as the service reads it. */
export interface ParsedScope {
  /** As written in the token. */
  readonly scope: string;
  /** "resource", "identity", "launch context", "refresh token", "extension" or "invalid". */
  readonly kind: string;
  /** The canonical SMART v2 form, for resource scopes; null otherwise. */
  readonly canonical: string | null;
  /** Why an invalid scope grants nothing; null otherwise. */
  readonly error: string | null;
}

/**
 * RFC 7662 introspection with the SMART launch context, every field the service answers
 * with; inactive: `active` false only. Times are seconds since the epoch, 0 when absent.
 */
export interface Introspection {
  readonly active: boolean;
  readonly scope: string;
  readonly clientId: string;
  readonly sub: string;
  readonly iss: string;
  readonly aud: readonly string[];
  readonly exp: number;
  readonly iat: number;
  readonly nbf: number;
  readonly jti: string | null;
  readonly tokenType: string | null;
  readonly patient: string | null;
  readonly encounter: string | null;
  readonly fhirUser: string | null;
  readonly fhirContext: readonly unknown[];
  readonly needPatientBanner: boolean;
  readonly intent: string | null;
  readonly tenant: string | null;
  readonly smartStyleUrl: string | null;
  readonly scopes: readonly ParsedScope[];
  readonly ignoredScopes: readonly IgnoredScope[];
  readonly source: string;
  readonly cached: boolean;
  readonly requestId: string;
}

// The wire shapes, as proto-loader gives them with the client's options (keepCase,
// enums as strings, longs as numbers, defaults on).
type Wire = Record<string, any>;

const orNull = (text: string | undefined): string | null => (text ? text : null);

const ignoredScope = (ignored: Wire): IgnoredScope => ({
  scope: ignored.scope,
  reason: ignored.reason,
});

/** The one place an allow is read: the enum name, compared for equality. */
export const isAllow = (decision: unknown): boolean => decision === 'DECISION_ALLOW';

/**
 * Whether a grant leaves the FHIR server nothing to enforce: no compartment, filter,
 * exclusion or answer to read, and no obligation (every user/ and system/ grant carries
 * one: the user's permissions, the client's policy).
 */
export const leavesNothingToApply = (grant: Grant): boolean =>
  grant.compartment === null &&
  grant.filters.length === 0 &&
  grant.excludeOtherPatientsVia.length === 0 &&
  !grant.answerMustBeRead &&
  grant.obligation === 'OBLIGATION_NONE';

/**
 * An allow with nothing left for the FHIR server to enforce: no `_include` types to hold
 * the answer to, and no grant (a public endpoint) or a grant that leaves nothing to apply.
 * The service's own rule (`Decision::is_allowed_outright`).
 */
export const isAllowedOutright = (decision: Decision): boolean =>
  decision.allowed &&
  decision.includeReadableTypes.length === 0 &&
  (decision.grants.length === 0 || decision.grants.some(leavesNothingToApply));

function grant(wire: Wire): Grant {
  return {
    scope: wire.scope,
    context: wire.context,
    compartment: orNull(wire.compartment),
    compartmentParams: wire.compartment_params,
    filters: (wire.filters as Wire[]).map((filter) => ({
      param: filter.param,
      values: filter.values,
    })),
    resourceTypes: wire.resource_types,
    obligation: wire.obligation,
    excludeOtherPatientsVia: wire.exclude_other_patients_via,
    answerMustBeRead: Boolean(wire.answer_must_be_read),
  };
}

function subject(wire: Wire | null | undefined): Subject | null {
  if (!wire) return null;
  return {
    clientId: wire.client_id,
    sub: wire.sub,
    fhirUser: orNull(wire.fhir_user),
    patient: orNull(wire.patient),
    encounter: orNull(wire.encounter),
    scope: wire.scope,
    expiresAt: Number(wire.expires_at),
  };
}

export function decision(wire: Wire): Decision {
  return {
    allowed: isAllow(wire.decision),
    reason: String(wire.reason),
    message: wire.message,
    grants: (wire.grants as Wire[]).map(grant),
    subject: subject(wire.subject),
    ignoredScopes: (wire.ignored_scopes as Wire[]).map(ignoredScope),
    includeReadableTypes: wire.include_readable_types,
    requestId: wire.request_id,
  };
}

export function batchDecision(wire: Wire): BatchDecision {
  const entries = (wire.entries as Wire[]).map(decision);
  return {
    allowed: isAllow(wire.decision) && entries.length > 0 && entries.every((e) => e.allowed),
    reason: String(wire.reason),
    message: wire.message,
    entries,
    subject: subject(wire.subject),
    requestId: wire.request_id,
  };
}

export function filtered(wire: Wire): Filtered {
  const allowed = isAllow(wire.decision);
  return {
    allowed,
    reason: String(wire.reason),
    message: wire.message,
    filtered: wire.filtered === true,
    entries: (wire.entries as Wire[]).map((entry) => ({
      index: Number(entry.index),
      reference: orNull(entry.reference),
      mode: String(entry.mode),
      kept: entry.kept === true,
      reason: String(entry.reason),
      message: entry.message,
    })),
    withheld: Number(wire.withheld),
    body: allowed ? Buffer.from(wire.body as Uint8Array) : null,
    subject: subject(wire.subject),
    requestId: wire.request_id,
  };
}

export function introspection(wire: Wire): Introspection {
  return {
    active: wire.active === true,
    scope: wire.scope,
    clientId: wire.client_id,
    sub: wire.sub,
    iss: wire.iss,
    aud: wire.aud,
    exp: Number(wire.exp),
    iat: Number(wire.iat),
    nbf: Number(wire.nbf),
    jti: orNull(wire.jti),
    tokenType: orNull(wire.token_type),
    patient: orNull(wire.patient),
    encounter: orNull(wire.encounter),
    fhirUser: orNull(wire.fhir_user),
    fhirContext: (wire.fhir_context as string[]).map((item) => JSON.parse(item) as unknown),
    needPatientBanner: wire.need_patient_banner === true,
    intent: orNull(wire.intent),
    tenant: orNull(wire.tenant),
    smartStyleUrl: orNull(wire.smart_style_url),
    scopes: (wire.scopes as Wire[]).map((parsed) => ({
      scope: parsed.scope,
      kind: parsed.kind,
      canonical: orNull(parsed.canonical),
      error: orNull(parsed.error),
    })),
    ignoredScopes: (wire.ignored_scopes as Wire[]).map(ignoredScope),
    source: String(wire.source),
    cached: wire.cached === true,
    requestId: wire.request_id,
  };
}
