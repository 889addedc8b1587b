// Tell bitacora's database change capture who is acting, from node-postgres (`pg`).
//
// `bitacora capture install` puts triggers on your tables; they read who acts from
// transaction-local settings (`bitacora.actor_id`, `bitacora.ip`, ...). `withAuditContext`
// runs your writes in one transaction that first sets them; `set_config(..., true)` lasts until
// COMMIT or ROLLBACK, so a pooled connection never carries one request's user into the next.
//
//   const { withAuditContext } = require('./bitacoraAudit');
//   await withAuditContext(pool, { actor_id: String(user.id), ip: req.ip, request_id: req.id },
//     async (client) => {
//       await client.query('UPDATE users SET role = $1 WHERE id = $2', ['admin', 456]);
//     });
'use strict';

const FIELDS = ['actor_id', 'actor_name', 'actor_email', 'actor_type', 'ip', 'user_agent', 'request_id'];
const SET_CONTEXT =
  'SELECT ' + FIELDS.map((f, i) => `set_config('bitacora.${f}', $${i + 1}, true)`).join(', ');

/** Sets the bitacora.* settings for the rest of the client's current transaction. */
async function setAuditContext(client, context) {
  await client.query(SET_CONTEXT, FIELDS.map((f) => (context[f] == null ? '' : String(context[f]))));
}

/** Runs `work(client)` in a transaction attributed to `context`; commits, or rolls back on error. */
async function withAuditContext(pool, context, work) {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await setAuditContext(client, context);
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK');
    throw err;
  } finally {
    client.release();
  }
}

module.exports = { setAuditContext, withAuditContext };
