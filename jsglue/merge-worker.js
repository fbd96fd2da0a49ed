// mapcrdt — the worker merge() hands large documents to (index.js, DESIGN §10: long work
// never blocks the event loop). It runs the same merge on its own instance of the module, in
// a Web Worker (a module worker) in a browser and a worker thread in Node.
//
// Messages in: {id, reference, latest, incoming, policy, wasmURL}, the documents as merge()
// takes them (text or bytes), one at a time. Out: {id, result} or {id, error: {code,
// message, conflicts?}}.

import { merge } from "./index.js";

const port =
  typeof WorkerGlobalScope !== "undefined" && globalThis instanceof WorkerGlobalScope
    ? globalThis
    : (await import("node:worker_threads")).parentPort;

function handle(m) {
  const { id, reference, latest, incoming, policy, wasmURL } = m;
  merge(reference, latest, incoming, { policy, wasmURL, offThread: false }).then(
    (result) => port.postMessage({ id, result }),
    (e) => {
      const error = {
        code: typeof e?.code === "string" ? e.code : "internal",
        message: String(e?.message ?? e),
      };
      if (e?.conflicts) error.conflicts = e.conflicts;
      port.postMessage({ id, error });
    },
  );
}

if (port === globalThis) globalThis.addEventListener("message", (e) => handle(e.data));
else port.on("message", handle);
