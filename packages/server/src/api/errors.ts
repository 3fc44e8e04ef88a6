import type { FastifyError, FastifyInstance } from 'fastify';
import {
  CapacityError,
  ConflictError,
  ForbiddenError,
  IncompatibleVersionError,
  InvalidRequestError,
  InvalidStateError,
  NotFoundError,
  OperationFailedError,
  StorageFullError,
  TeamLimitError,
  UnauthorizedError,
} from '../services/errors.js';

/** An error of the edge itself (authentication) with its HTTP status, sent as E2B's `{code, message}`. */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The one place where errors become HTTP: each domain error of the services (a node's
 * failures become domain errors in NodeClient), with its status code and extra headers.
 */
const STATUS: [
  type: abstract new (...args: never[]) => Error,
  code: number,
  headers?: Record<string, string>,
][] = [
  [InvalidRequestError, 400],
  [UnauthorizedError, 401],
  [ForbiddenError, 403],
  [NotFoundError, 404],
  [ConflictError, 409],
  [InvalidStateError, 409],
  [IncompatibleVersionError, 426],
  [TeamLimitError, 429],
  [OperationFailedError, 500],
  [CapacityError, 503],
  [StorageFullError, 507],
];

/** An error as the API reports it: E2B's `{code, message}` body, and headers to send with it. */
export interface ErrorReply {
  code: number;
  message: string;
  headers: Record<string, string>;
}

/** How the API reports `error`, if it is of a kind it knows: its status and its own message. */
export function knownErrorReply(error: unknown): ErrorReply | undefined {
  if (error instanceof ApiError) return { code: error.statusCode, message: error.message, headers: {} };
  if (error instanceof TeamLimitError)
    return { code: 429, message: error.message, headers: { 'retry-after': String(error.retryAfterS) } };
  for (const [type, code, headers = {}] of STATUS)
    if (error instanceof type) return { code, message: error.message, headers };
  return undefined;
}

/** E2B's `{code, message}` for an error reported in a result (a fork's): one of no known kind is a 500 with its message. */
export function errorBody(error: unknown): { code: number; message: string } {
  const known = knownErrorReply(error);
  if (known) return { code: known.code, message: known.message };
  return { code: 500, message: error instanceof Error ? error.message : String(error) };
}

/** Every error leaves as `{code, message}`; unexpected ones as a 500 that says nothing internal. */
export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const known = knownErrorReply(error);
    if (known) {
      void reply.code(known.code).headers(known.headers).send({ code: known.code, message: known.message });
      return;
    }
    if (error.validation) {
      void reply
        .code(400)
        .send({ code: 400, message: `${error.validationContext ?? 'request'}${validationMessage(error)}` });
      return;
    }
    // Fastify's own client errors (a body too large, a bad content type …) keep their status.
    const status = error.statusCode ?? 500;
    if (status >= 400 && status < 500) {
      void reply.code(status).send({ code: status, message: error.message });
      return;
    }
    request.log.error({ err: error }, 'request failed');
    void reply.code(500).send({ code: 500, message: 'internal error' });
  });
  app.setNotFoundHandler((request, reply) => {
    void reply
      .code(404)
      .send({ code: 404, message: `no route ${request.method} ${request.url.split('?')[0]}` });
  });
}

function validationMessage(error: FastifyError): string {
  const first = error.validation?.[0];
  if (!first) return ` is invalid: ${error.message}`;
  const where = first.instancePath ? first.instancePath.replaceAll('/', '.') : '';
  // A field an object's `additionalProperties: Type.Never()` refuses.
  if (first.keyword === 'not') return `${where} is not a known field`;
  return `${where} ${first.message ?? 'is invalid'}`;
}
