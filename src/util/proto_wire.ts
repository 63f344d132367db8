/**
 * Protobuf wire helpers shared by the transport and the services: decoding a request message (an error a
 * client can act on) and the field headers that let a service send bytes it already holds without copying
 * them into a message.
 *
 * @example
 * ```ts
 * import { decodeRequest, lengthDelimitedHeader } from "./proto_wire.ts";
 * import { ReadRequestSchema } from "../gen/google/bytestream/bytestream_pb.ts";
 * const req = decodeRequest(ReadRequestSchema, new Uint8Array([0x0a, 0x01, 0x78])); // resource_name "x"
 * console.log(req.resourceName); // x
 * // ReadResponse.data (field 10) carrying 3 bytes: header, then the bytes themselves.
 * console.log(lengthDelimitedHeader(10, 3)); // Uint8Array(2) [ 82, 3 ]
 * ```
 * @module
 */
import { create, type DescMessage, fromBinary, type MessageShape } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { CairnError, Code } from "./error.ts";

/** Decodes a request message; INVALID_ARGUMENT naming the type when the bytes are not one. */
export function decodeRequest<D extends DescMessage>(schema: D, bytes: Uint8Array): MessageShape<D> {
  // No bytes decode as the message with every field unset: made without a reader.
  if (bytes.byteLength === 0) return create(schema);
  try {
    return fromBinary(schema, bytes);
  } catch (err) {
    throw new CairnError(Code.InvalidArgument, `Cannot decode ${schema.typeName}: ${(err as Error).message}`);
  }
}

/**
 * The wire header (tag and length) of length-delimited field `field` carrying `length` bytes: followed by those
 * bytes, it is the field as `toBinary` would write it.
 */
export function lengthDelimitedHeader(field: number, length: number): Uint8Array {
  return new BinaryWriter().tag(field, WireType.LengthDelimited).uint32(length).finish();
}
