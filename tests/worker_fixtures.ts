/**
 * Test fixtures for worker tests: a fake scheduler (the WorkerApi bidi stream, served by the test REAPI
 * server) and helpers to upload actions into that server's CAS.
 * @module
 */
import assert from "node:assert/strict";
import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import type { Digest } from "../src/digest/digest.ts";
import {
  ActionSchema,
  CommandSchema,
  type Digest as ProtoDigest,
  DigestSchema,
  DirectorySchema,
  FileNodeSchema,
} from "../src/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts";
import {
  type ExecutionUpdate,
  type SchedulerMessage,
  SchedulerMessageSchema,
  type WorkerMessage,
} from "../src/gen/cairn/worker/v1/worker_api_pb.ts";
import type { TestReapiServer } from "./fixtures/test_reapi_server.ts";

/** A fake scheduler: records Hello and updates, pushes StartExecution. */
export class FakeScheduler {
  hellos: WorkerMessage[] = [];
  updates: ExecutionUpdate[] = [];
  #out: SchedulerMessage[] = [];
  #wake: (() => void) | undefined;
  #waiters: (() => void)[] = [];
  #ended = false;

  send(msg: MessageInitShape<typeof SchedulerMessageSchema>) {
    this.#out.push(create(SchedulerMessageSchema, msg));
    this.#wake?.();
  }

  end() {
    this.#ended = true;
    this.#wake?.();
  }

  async waitFor<T>(pred: () => T | undefined, ms = 60_000): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = pred();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error("timed out waiting");
      await new Promise<void>((r) => {
        const t = setTimeout(r, 50);
        this.#waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  terminal(op: string): ExecutionUpdate | undefined {
    return this.updates.find((u) => u.operationId === op && u.update.case !== "started");
  }

  impl = {
    connect: (requests: AsyncIterable<WorkerMessage>) => {
      // deno-lint-ignore no-this-alias
      const self = this;
      (async () => {
        try {
          for await (const m of requests) {
            if (m.msg.case === "hello") {
              self.hellos.push(m);
              self.send({
                msg: {
                  case: "welcome",
                  value: { workerId: "w-test", keepaliveInterval: durationFromMs(1000) },
                },
              });
            } else if (m.msg.case === "executionUpdate") self.updates.push(m.msg.value);
            for (const w of self.#waiters.splice(0)) w();
          }
        } catch { /* stream closed */ }
        self.end();
      })();
      return (async function* () {
        for (;;) {
          while (self.#out.length) yield self.#out.shift()!;
          if (self.#ended) return;
          await new Promise<void>((r) => (self.#wake = r));
        }
      })();
    },
  };
}

export const enc = new TextEncoder();
export const pd = (d: Digest): ProtoDigest =>
  create(DigestSchema, { hash: d.hash, sizeBytes: BigInt(d.size) });

/** Uploads an action with `files` (path → content, `+x` suffix in the key for executables). */
export function uploadAction(
  server: Pick<TestReapiServer, "put">,
  command: MessageInitShape<typeof CommandSchema>,
  files: Record<string, string>,
  action: { timeout?: ReturnType<typeof durationFromMs>; doNotCache?: boolean } = {},
) {
  // Build a two-level tree: root files and one `src/` directory.
  const rootFiles: MessageInitShape<typeof FileNodeSchema>[] = [];
  const srcFiles: MessageInitShape<typeof FileNodeSchema>[] = [];
  for (const [key, content] of Object.entries(files).sort()) {
    const exec = key.endsWith("+x");
    const path = exec ? key.slice(0, -2) : key;
    const d = server.put(enc.encode(content));
    const node = { name: path.replace(/^src\//, ""), digest: pd(d), isExecutable: exec };
    (path.startsWith("src/") ? srcFiles : rootFiles).push(node);
  }
  const src = toBinary(DirectorySchema, create(DirectorySchema, { files: srcFiles }));
  const srcDigest = server.put(src);
  const root = toBinary(
    DirectorySchema,
    create(DirectorySchema, {
      files: rootFiles,
      directories: [{ name: "src", digest: pd(srcDigest) }],
      symlinks: [{ name: "link_in", target: "src/data.txt" }],
    }),
  );
  const rootDigest = server.put(root);
  const cmd = server.put(toBinary(CommandSchema, create(CommandSchema, command)));
  const act = create(ActionSchema, { commandDigest: pd(cmd), inputRootDigest: pd(rootDigest), ...action });
  const actionDigest = server.put(toBinary(ActionSchema, act));
  return { action: act, actionDigest };
}

export function start(
  scheduler: FakeScheduler,
  op: string,
  a: ReturnType<typeof uploadAction>,
  upload = true,
) {
  scheduler.send({
    msg: {
      case: "startExecution",
      value: {
        operationId: op,
        action: a.action,
        actionDigest: pd(a.actionDigest),
        uploadToActionCache: upload,
      },
    },
  });
}

export async function blob(server: TestReapiServer, d: ProtoDigest | undefined): Promise<string> {
  const b = server.blobs.get(`${d?.hash}-${d?.sizeBytes}`);
  if (d?.sizeBytes === 0n) return "";
  assert.ok(b, `blob ${d?.hash}-${d?.sizeBytes} was not uploaded`);
  return await Promise.resolve(new TextDecoder().decode(b));
}
