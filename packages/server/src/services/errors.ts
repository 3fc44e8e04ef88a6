/**
 * What the services throw when they refuse or fail a request: domain errors, which say
 * what went wrong, not how HTTP says it. The API's error handler (`api/errors.ts`) picks
 * each one's status code and sends its message as E2B's `{code, message}`.
 */
export abstract class ServiceError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** What the request names does not exist (for the caller's team). */
export class NotFoundError extends ServiceError {}

/** The request is malformed or asks for something this server does not do. */
export class InvalidRequestError extends ServiceError {}

/** The request collides with what exists (a name already taken, the team's last key …). */
export class ConflictError extends ServiceError {}

/** The sandbox's state forbids the operation (pausing a paused sandbox …). */
export class InvalidStateError extends ServiceError {}

/** The caller is not who it says (a node's wrong or revoked token or credential). */
export class UnauthorizedError extends ServiceError {}

/** The caller speaks a version of the contract this server does not (a node of another major version). */
export class IncompatibleVersionError extends ServiceError {}

/** The caller's team may not do this (only the operator team makes teams). */
export class ForbiddenError extends ServiceError {}

/** The node has no room for another sandbox right now. */
export class CapacityError extends ServiceError {}

/** Where the request would write is full (a volume at its size): freeing room, not waiting, helps. */
export class StorageFullError extends ServiceError {}

/** What a team's quota limits (`services/team-quotas.ts`); `sandboxes` is also the server's default cap. */
export type QuotaKind = 'sandboxes' | 'vcpus' | 'memory' | 'disk' | 'creates' | 'requests' | 'volumes';

/** The caller's team is past one of its quotas (or the server's default cap): try again after `retryAfterS`. */
export class TeamLimitError extends ServiceError {
  constructor(
    message: string,
    readonly kind: QuotaKind = 'sandboxes',
    readonly retryAfterS = 1,
  ) {
    super(message);
  }
}

/**
 * The node failed to do what it was asked: the message says what failed and the first
 * line of why (`the sandbox could not start: …`); the cause is kept for the logs.
 */
export class OperationFailedError extends ServiceError {
  constructor(what: string, cause: unknown) {
    super(`${what}: ${(cause instanceof Error ? cause.message : String(cause)).split('\n')[0]}`, { cause });
  }
}

/** A template build failed at `step` (`base`, a step's number, `finalize`); `layers` are what its earlier steps made. */
export class BuildStepFailedError extends ServiceError {
  constructor(
    message: string,
    readonly step: string,
    readonly layers: string[],
  ) {
    super(message);
  }
}
