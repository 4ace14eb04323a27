/**
 * Loads a history exported by `temporal workflow show --output json`.
 *
 * Why not historyFromJSON from @temporalio/common: in this dependency tree (protobufjs 7 hoisted for
 * @grpc/proto-loader, protobufjs 8 nested separately under @temporalio/common and @temporalio/proto)
 * it fails with "type must be a Type" — common's protojson checks `instanceof Type` against its own
 * protobufjs copy while the History type comes from @temporalio/proto's copy. Here protojson is
 * resolved from @temporalio/proto's location, so both sides are the same copy whatever npm hoists.
 */
import { dirname } from 'node:path';
import * as proto from '@temporalio/proto';
import { patchProtobufRoot } from '@temporalio/proto/lib/patch-protobuf-root';

type History = proto.temporal.api.history.v1.IHistory;
interface ProtoJson {
  fromJson(type: unknown, json: unknown, opts?: { ignoreUnknownFields?: boolean }): unknown;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports -- resolved from @temporalio/proto's location (see above)
const protojson = require(
  require.resolve('protobufjs/ext/protojson', { paths: [dirname(require.resolve('@temporalio/proto'))] }),
) as ProtoJson;
const historyType = (patchProtobufRoot(proto) as unknown as { lookupType(n: string): unknown }).lookupType(
  'temporal.api.history.v1.History',
);

export function historyFromCliJson(json: unknown): History {
  if (typeof json !== 'object' || json === null || !Array.isArray((json as { events?: unknown }).events)) {
    throw new TypeError(
      'not a history: expected { "events": [...] } as `temporal workflow show --output json` writes',
    );
  }
  const h = protojson.fromJson(historyType, json, { ignoreUnknownFields: true }) as History | null;
  if (!h) throw new TypeError('invalid history');
  return h;
}
