// Our .proto files are wire-identical to the ones the e2b SDK was generated from: same
// packages, services, methods (and streaming kinds), messages, fields (numbers, types,
// labels, oneofs) and enums. The SDK embeds its descriptors; we compare against them.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { filesystem as fsp, process as pp } from '@aiva/protocol';
import { type DescFile, fromBinary } from '@bufbuild/protobuf';
import { fileDesc } from '@bufbuild/protobuf/codegenv2';
import { FileDescriptorProtoSchema, file_google_protobuf_timestamp } from '@bufbuild/protobuf/wkt';

const require = createRequire(import.meta.url);
const sdkBundle = readFileSync(require.resolve('e2b').replace(/index\.js$/, 'index.mjs'), 'utf8');

function sdkFile(name: string): DescFile {
  for (const m of sdkBundle.matchAll(/fileDesc\("([A-Za-z0-9+/=]+)"/g)) {
    const b64 = m[1] ?? '';
    const proto = fromBinary(FileDescriptorProtoSchema, Buffer.from(b64, 'base64'));
    if (proto.name === name) return fileDesc(b64, [file_google_protobuf_timestamp]);
  }
  throw new Error(`the SDK bundle has no descriptor of ${name}`);
}

/** Everything about a file that reaches the wire, as plain data. */
function shape(file: DescFile): unknown {
  return {
    services: file.services.map((s) => ({
      name: s.typeName,
      methods: s.methods.map((m) => [m.name, m.methodKind, m.input.typeName, m.output.typeName]),
    })),
    enums: [...file.enums, ...file.messages.flatMap((m) => m.nestedEnums)].map((e) => ({
      name: e.typeName,
      values: e.values.map((v) => [v.name, v.number]),
    })),
    messages: allMessages(file).map((m) => ({
      name: m.typeName,
      fields: m.fields.map((f) => ({
        name: f.name,
        json: f.jsonName,
        number: f.number,
        kind: f.fieldKind,
        scalar: 'scalar' in f ? f.scalar : undefined,
        type: f.message?.typeName ?? f.enum?.typeName,
        optional: f.proto.proto3Optional,
        oneof: f.oneof?.name,
        map: f.fieldKind === 'map' ? [f.mapKey, f.mapKind] : undefined,
      })),
    })),
  };
}

function allMessages(file: DescFile) {
  const out: DescFile['messages'] = [];
  const walk = (ms: DescFile['messages']) => {
    for (const m of ms) {
      out.push(m);
      walk(m.nestedMessages);
    }
  };
  walk(file.messages);
  return out;
}

test('process.proto is wire-identical to the SDK', () => {
  assert.deepEqual(shape(pp.file_process_process), shape(sdkFile('process/process.proto')));
});

test('filesystem.proto is wire-identical to the SDK', () => {
  assert.deepEqual(shape(fsp.file_filesystem_filesystem), shape(sdkFile('filesystem/filesystem.proto')));
});

test('the comparison can fail: a changed field is seen', () => {
  const ours = shape(pp.file_process_process) as {
    messages: { name: string; fields: { number: number }[] }[];
  };
  const changed = structuredClone(ours);
  const end = changed.messages.find((m) => m.name === 'process.ProcessEvent.EndEvent');
  assert.ok(end?.fields[0]);
  end.fields[0].number = 99;
  assert.notDeepEqual(changed, shape(sdkFile('process/process.proto')));
});
