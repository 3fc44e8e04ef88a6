import { Type } from 'typebox';
import { Text } from './schemas.js';

// Request shapes of E2B's template API (e2b SDK 2.51's TemplateBuildRequestV3,
// TemplateBuildStartV2, tags), checked before a service sees them.

const Name = Text({ minLength: 1, maxLength: 256 });

export const TemplateParams = Type.Object({ templateID: Name });
export const BuildParams = Type.Object({ templateID: Name, buildID: Text({ minLength: 1, maxLength: 64 }) });
export const FileParams = Type.Object({ templateID: Name, hash: Text({ minLength: 1, maxLength: 128 }) });

export const TemplateBuildRequest = Type.Object(
  {
    name: Type.Optional(Name),
    alias: Type.Optional(Name),
    tags: Type.Optional(Type.Array(Text({ minLength: 1, maxLength: 128 }), { maxItems: 32 })),
    cpuCount: Type.Optional(Type.Integer()),
    memoryMB: Type.Optional(Type.Integer()),
    /** Sent by the SDK; aiva's sandboxes get the disk their template says. */
    minFreeDiskMb: Type.Optional(Type.Integer()),
    teamID: Type.Optional(Type.String()),
  },
  { additionalProperties: true },
);

const Step = Type.Object(
  {
    type: Text({ minLength: 1, maxLength: 32 }),
    args: Type.Optional(Type.Array(Text({ maxLength: 256 * 1024 }), { maxItems: 1024 })),
    filesHash: Type.Optional(Text({ maxLength: 128 })),
    force: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: true },
);

export const BuildStartBody = Type.Object(
  {
    fromImage: Type.Optional(Text({ maxLength: 1024 })),
    fromTemplate: Type.Optional(Text({ maxLength: 256 })),
    /** aiva's own: the files hash of an uploaded image archive (`aiva template import`). */
    fromArchive: Type.Optional(Text({ maxLength: 64 })),
    fromImageRegistry: Type.Optional(
      Type.Object(
        {
          type: Type.String(),
          username: Type.Optional(Type.String()),
          password: Type.Optional(Type.String()),
        },
        { additionalProperties: true },
      ),
    ),
    steps: Type.Optional(Type.Array(Step, { maxItems: 256 })),
    startCmd: Type.Optional(Text({ maxLength: 64 * 1024 })),
    readyCmd: Type.Optional(Text({ maxLength: 64 * 1024 })),
    /** aiva's own: fail at the base when the image has no ENTRYPOINT or CMD (`aiva deploy <env> <image>`). */
    requireCommand: Type.Optional(Type.Boolean()),
    force: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: true },
);

export const BuildStatusQuery = Type.Object({
  logsOffset: Type.Optional(Type.Integer({ minimum: 0 })),
  limit: Type.Optional(Type.Integer({ minimum: 0, maximum: 100 })),
  level: Type.Optional(
    Type.Union([Type.Literal('debug'), Type.Literal('info'), Type.Literal('warn'), Type.Literal('error')]),
  ),
});

export const TemplateUpdateBody = Type.Object(
  { public: Type.Optional(Type.Boolean()) },
  { additionalProperties: true },
);
export const AssignTagsBody = Type.Object({
  target: Name,
  tags: Type.Array(Text({ minLength: 1, maxLength: 128 }), { maxItems: 32 }),
});
export const DeleteTagsBody = Type.Object({
  name: Name,
  tags: Type.Array(Text({ minLength: 1, maxLength: 128 }), { maxItems: 32 }),
});
