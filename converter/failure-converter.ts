/**
 * The failure converter of every pgha worker and client (loaded by path: it also runs inside the
 * workflow sandbox). encodeCommonAttributes moves a failure's message and stack trace into an
 * encoded payload, so the payload codec encrypts them like any input: history shows only
 * "Encoded failure" to someone without the key.
 */
import { DefaultFailureConverter } from '@temporalio/common';

export const failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
