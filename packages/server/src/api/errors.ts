import type { FastifyError, FastifyInstance } from 'fastify';

/** An error with an HTTP status and a message for the client, sent as E2B's `{code, message}`. */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly statusCode: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export const badRequest = (message: string) => new ApiError(400, message);
export const notFound = (message: string) => new ApiError(404, message);
export const conflict = (message: string) => new ApiError(409, message);

/** Every error leaves as `{code, message}`; unexpected ones as a 500 that says nothing internal. */
export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError | ApiError, request, reply) => {
    if (error instanceof ApiError) {
      void reply
        .code(error.statusCode)
        .headers(error.headers)
        .send({ code: error.statusCode, message: error.message });
      return;
    }
    const status = error.statusCode ?? 500;
    if (error.validation) {
      void reply
        .code(400)
        .send({ code: 400, message: `${error.validationContext ?? 'request'}${validationMessage(error)}` });
      return;
    }
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
  return `${where} ${first.message ?? 'is invalid'}`;
}
