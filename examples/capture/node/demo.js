// Runs the snippet against a real database (bitacora's test suite calls this):
//   node demo.js postgres://postgres@127.0.0.1:5432/shop
// Expects a table `tickets (id int primary key, title text, status text)` with capture installed.
'use strict';

const { Pool } = require('pg');
const { withAuditContext } = require('./bitacoraAudit');

async function main() {
  const pool = new Pool({ connectionString: process.argv[2], max: 1 });
  const ctx = { actor_id: '7', actor_name: 'Dr. Nexo', ip: '10.0.2.45', user_agent: 'node-demo', request_id: 'req-js-1' };
  await withAuditContext(pool, ctx, async (c) => {
    await c.query("INSERT INTO tickets VALUES (10, 'Switch caído', 'open')");
    await c.query("UPDATE tickets SET status = 'closed' WHERE id = 10");
  });
  // A failing request: rolled back, nothing recorded.
  await withAuditContext(pool, ctx, async (c) => {
    await c.query("INSERT INTO tickets VALUES (11, 'never', 'open')");
    throw new Error('validation failed');
  }).catch(() => {});
  // The same pooled connection, outside any context: no actor.
  await pool.query('DELETE FROM tickets WHERE id = 10');
  await pool.end();
  console.log('ok');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
