// node-postgres against sqlgate's wire front door: simple and extended
// queries, parameters, a transaction, an error with its SQLSTATE, a NOTICE.
// usage: node pg_check.mjs postgresql://ACTOR:TOKEN@HOST:PORT/BRANCH  (prints "ok")
import pg from "pg";

const assert = (cond, what) => { if (!cond) { console.error("FAILED: " + what); process.exit(1); } };
const client = new pg.Client({ connectionString: process.argv[2] });
const notices = [];
client.on("notice", (n) => notices.push(n.message));
await client.connect();

let r = await client.query("SELECT 1 AS one, 'x' AS letter");
assert(r.rows[0].one === 1 && r.rows[0].letter === "x", "simple select " + JSON.stringify(r.rows));
await client.query("CREATE TABLE node_t (id int, name text)");
r = await client.query("INSERT INTO node_t VALUES ($1, $2), ($3, $4)", [1, "a", 2, null]);
assert(r.rowCount === 2, "insert rowCount " + r.rowCount);
r = await client.query({ name: "by-id", text: "SELECT name FROM node_t WHERE id = $1", values: [1] });
assert(r.rows[0].name === "a", "prepared " + JSON.stringify(r.rows));
r = await client.query({ name: "by-id", text: "SELECT name FROM node_t WHERE id = $1", values: [2] });
assert(r.rows[0].name === null, "prepared again " + JSON.stringify(r.rows));
r = await client.query({ text: "SELECT id, name FROM node_t ORDER BY id", rowMode: "array" });
assert(JSON.stringify(r.rows) === '[[1,"a"],[2,null]]', "array mode " + JSON.stringify(r.rows));
assert(r.fields[0].dataTypeID === 23, "int4 oid " + r.fields[0].dataTypeID);

await client.query("BEGIN");
await client.query("INSERT INTO node_t VALUES (3, 'c')");
await client.query("ROLLBACK");
r = await client.query("SELECT count(*)::int AS n FROM node_t");
assert(r.rows[0].n === 2, "rollback " + JSON.stringify(r.rows));

let code = null;
try { await client.query("SELECT * FROM node_missing_table"); } catch (e) { code = e.code; }
assert(code === "42P01", "sqlstate " + code);

await client.query("DELETE FROM node_t WHERE id = 2");
assert(notices.some((m) => m.startsWith("sqlgate: checkpoint cp_")), "checkpoint notice " + JSON.stringify(notices));
r = await client.query("SELECT 41 + $1::int AS v", [1]);
assert(r.rows[0].v === 42, "after notice " + JSON.stringify(r.rows));
await client.end();
console.log("ok");
