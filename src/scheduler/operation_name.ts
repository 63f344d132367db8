/**
 * Operation names: `{instance}/operations/{uuid}` (or `operations/{uuid}` for the empty instance), so the
 * Operations service can tell an operation's instance from its name.
 *
 * @example
 * ```ts
 * import { newOperationName, instanceOfOperation } from "./operation_name.ts";
 * const name = newOperationName("main"); // main/operations/0b6c…
 * instanceOfOperation(name); // "main"
 * ```
 * @module
 */
const SEGMENT = "operations/";

/** A fresh unique operation name for an instance. */
export function newOperationName(instanceName: string): string {
  const id = crypto.randomUUID();
  return instanceName === "" ? `${SEGMENT}${id}` : `${instanceName}/${SEGMENT}${id}`;
}

/** The instance part of an operation name, or undefined when the name has no `operations/` segment. */
export function instanceOfOperation(name: string): string | undefined {
  if (name.startsWith(SEGMENT)) return "";
  const i = name.lastIndexOf(`/${SEGMENT}`);
  return i < 0 ? undefined : name.slice(0, i);
}
