// The graphile-worker peer (graphile-worker 0.18): a trigger on `invoices` queues a change's jobs in
// one call to graphile_worker.add_jobs (bench/peers/systems.py installs it); this worker runs each
// job: ONE statement builds the payload and names the URL and secret (../payload.sql), node's
// crypto signs it (Standard Webhooks), fetch POSTs it; a non-2xx throws, so graphile retries.
//
// Tuned as graphile-worker's performance page recommends: concurrentJobs 24 with a pool of 25,
// a local queue of 500 jobs fetched in batches, and batched completion (completeJobBatchDelay and
// failJobBatchDelay 0). LISTEN/NOTIFY wakes it; pollInterval is only the fallback.
//
// Usage: node worker.mjs migrate|work DATABASE_URL
// GRAPHILE_WORKER_DIR names the directory where `npm install` put graphile-worker.
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const installDir = process.env.GRAPHILE_WORKER_DIR ?? here;
const require = createRequire(path.join(installDir, "package.json"));
const { run, runMigrations } = await import(pathToFileURL(require.resolve("graphile-worker")).href);

const [mode, connectionString] = process.argv.slice(2);
const preset = {
  worker: {
    connectionString,
    concurrentJobs: 24,
    maxPoolSize: 25,
    pollInterval: 2000,
    localQueue: { size: 500 },
    completeJobBatchDelay: 0,
    failJobBatchDelay: 0,
  },
};

if (mode === "migrate") {
  await runMigrations({ preset });
  process.exit(0);
}

const payloadSql = readFileSync(path.join(here, "..", "payload.sql"), "utf8");
const keys = new Map(); // secret → HMAC key bytes
const hmacKey = (secret) => {
  let key = keys.get(secret);
  if (!key) {
    key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
    keys.set(secret, key);
  }
  return key;
};

const taskList = {
  async deliver(payload, helpers) {
    const { rows } = await helpers.query(payloadSql, [payload.webhook_id, payload.invoice_id]);
    if (rows.length === 0) return; // the invoice or the subscription is gone: nothing to send
    const { url, secret, body } = rows[0];
    const id = `msg_gw_${helpers.job.id}`;
    const timestamp = Math.floor(Date.now() / 1000);
    const signature = createHmac("sha256", hmacKey(secret)).update(`${id}.${timestamp}.${body}`).digest("base64");
    const response = await fetch(url, {
      method: "POST",
      body,
      headers: {
        "content-type": "application/json",
        "webhook-id": id,
        "webhook-timestamp": String(timestamp),
        "webhook-signature": `v1,${signature}`,
      },
      signal: AbortSignal.timeout(10_000),
    });
    await response.arrayBuffer();
    if (!response.ok) throw new Error(`${url} answered ${response.status}`);
  },
};

const runner = await run({ preset, taskList });
for (const sig of ["SIGTERM", "SIGINT"]) process.once(sig, () => runner.stop());
console.log(`READY ${process.pid}`);
await runner.promise;
