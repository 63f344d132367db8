/**
 * Reads a small protobuf message (Action, Command, Directory, ActionResult) from a store, bounded in size.
 *
 * @example
 * ```ts
 * import { readMessage } from "./read_message.ts";
 * import { ActionSchema } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
 * import { digestOf } from "../digest/digest.ts";
 * import { createMemoryStore } from "../store/memory_store.ts";
 * const cas = createMemoryStore();
 * const digest = digestOf(new TextEncoder().encode("not stored"));
 * const action = await readMessage(cas, digest, ActionSchema); // undefined when absent
 * ```
 * @module
 */
import { type DescMessage, fromBinary, type MessageShape } from "@bufbuild/protobuf";
import { getBytes, isDigestKey, keyToString } from "../store/helpers.ts";
import type { StoreDriver, StoreKey } from "../store/types.ts";
import { CairnError, Code } from "../util/error.ts";
import { checkMessageSize, MAX_DECODED_MESSAGE_BYTES } from "../util/limits.ts";

/** Largest message read this way (REAPI messages are small; bigger means a wrong key). */
export const MAX_MESSAGE_BYTES = MAX_DECODED_MESSAGE_BYTES;

/** Reads and decodes a message, or undefined when absent; INVALID_ARGUMENT when it does not decode. */
export async function readMessage<Desc extends DescMessage>(
  store: StoreDriver,
  key: StoreKey,
  schema: Desc,
): Promise<MessageShape<Desc> | undefined> {
  // Refused before reading: a CAS digest announces the size (an AC key's size is the action's, not the
  // entry's; getBytes bounds that read).
  if (isDigestKey(key)) checkMessageSize(schema.typeName, key, MAX_MESSAGE_BYTES);
  let bytes: Uint8Array;
  try {
    bytes = await getBytes(store, key, { maxSize: MAX_MESSAGE_BYTES });
  } catch (err) {
    if (err instanceof CairnError && err.code === Code.NotFound) return undefined;
    throw err;
  }
  try {
    return fromBinary(schema, bytes);
  } catch (err) {
    throw new CairnError(
      Code.InvalidArgument,
      `Cannot decode ${schema.typeName} ${keyToString(key)}: ${(err as Error).message}`,
      { cause: err },
    );
  }
}
