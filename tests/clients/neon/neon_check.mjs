// Drives the real, unchanged @neondatabase/serverless driver (neon() over
// HTTP) against sqlgate's POST /sql and prints one JSON document on stdout.
// tests/test_neon_driver.py runs it once per scenario and backend.
//
// Usage: node neon_check.mjs SCENARIO
//   [--endpoint URL] [--conn CONNSTR] [--read-conn CONNSTR] [--token TOKEN] [--table NAME]
// or the same through the environment:
//   NEON_ENDPOINT   full URL of sqlgate's /sql (neonConfig.fetchEndpoint)
//   NEON_CONN       postgresql://ACTOR:TOKEN@127.0.0.1:PORT/main (a token allowed to write/DDL)
//   NEON_READ_CONN  the same with a read-only token (scenario "errors")
//   NEON_TOKEN      a valid token for authToken (scenario "auth")
//   NEON_TABLE      a table name unique to this test and backend
//
// Output: {"scenario": ..., "results": {NAME: {"ok": true, "value": V} | {"ok": false, "error": E}}}
// where V is a typed description of what the driver returned (see describe()).

import { neon, neonConfig, NeonDbError } from '@neondatabase/serverless';

const args = process.argv.slice(2);
const scenario = args.find((a) => !a.startsWith('--')) ?? process.env.NEON_SCENARIO;
function option(name, envName) {
  const prefix = `--${name}=`;
  const hit = args.find((a) => a.startsWith(prefix));
  return hit ? hit.slice(prefix.length) : process.env[envName];
}
const endpoint = option('endpoint', 'NEON_ENDPOINT');
const conn = option('conn', 'NEON_CONN');
const readConn = option('read-conn', 'NEON_READ_CONN');
const token = option('token', 'NEON_TOKEN');
const table = option('table', 'NEON_TABLE');
if (!scenario || !endpoint || !conn) {
  console.error('usage: node neon_check.mjs SCENARIO --endpoint=URL --conn=CONNSTR (or NEON_* env vars)');
  process.exit(2);
}

neonConfig.fetchEndpoint = endpoint;

// A JSON-safe description of a value as the driver handed it to us, keeping its JS type.
function describe(v) {
  if (v === null) return { t: 'null' };
  if (v === undefined) return { t: 'undefined' };
  if (Buffer.isBuffer(v)) return { t: 'Buffer', hex: v.toString('hex') };
  if (v instanceof Date) return { t: 'Date', iso: Number.isNaN(v.getTime()) ? 'Invalid Date' : v.toISOString() };
  if (Array.isArray(v)) return { t: 'array', items: v.map(describe) };
  if (typeof v === 'bigint') return { t: 'bigint', v: v.toString() };
  if (typeof v === 'object') return { t: 'object', v: JSON.parse(JSON.stringify(v)) };
  return { t: typeof v, v };
}

// fullResults: the whole result as Neon defines it, rows described.
function describeFull(r) {
  return {
    fields: r.fields.map((f) => ({ ...f })),
    command: r.command,
    rowCount: r.rowCount,
    rowAsArray: r.rowAsArray,
    rows: r.rows.map((row) =>
      Array.isArray(row) ? row.map(describe) : Object.fromEntries(Object.entries(row).map(([k, v]) => [k, describe(v)])),
    ),
  };
}

function describeError(e) {
  return {
    name: e?.constructor?.name ?? typeof e,
    isNeonDbError: e instanceof NeonDbError,
    message: String(e?.message ?? e),
    code: e?.code ?? null,
    severity: e?.severity ?? null,
    position: e?.position ?? null,
    hint: e?.hint ?? null,
  };
}

const results = {};
async function step(name, fn) {
  try {
    results[name] = { ok: true, value: await fn() };
  } catch (e) {
    results[name] = { ok: false, error: describeError(e) };
  }
}

// The one value of a one-row, one-column result ("v").
const one = (rows) => describe(rows[0].v);

const TS = new Date('2024-01-02T03:04:05.678Z');
const TEXT = `it's "quoted" \\ back, ünïcödé ✓ 😀 日本`;
const OBJ = { a: [1, 2.5, null], b: { c: "d'e\"f" }, u: '✓' };

const scenarios = {
  // §1.3: every JS type the driver maps, through tagged templates.
  async template() {
    const sql = neon(conn);
    await step('null', async () => one(await sql`SELECT ${null}::text AS v`));
    await step('undefined', async () => one(await sql`SELECT ${undefined}::text AS v`));
    await step('true', async () => one(await sql`SELECT ${true}::bool AS v`));
    await step('false', async () => one(await sql`SELECT ${false}::bool AS v`));
    await step('int', async () => one(await sql`SELECT ${-42}::int AS v`));
    await step('float', async () => one(await sql`SELECT ${3.25}::float8 AS v`));
    await step('int8', async () => one(await sql`SELECT ${9007199254740993n}::int8 AS v`));
    await step('bigint_numeric', async () => one(await sql`SELECT ${12345678901234567890n}::numeric(20,0) AS v`));
    await step('numeric', async () => one(await sql`SELECT ${1.5}::numeric(10,2) AS v`));
    await step('text', async () => one(await sql`SELECT ${TEXT}::text AS v`));
    await step('untyped', async () => one(await sql`SELECT ${TEXT} AS v`));
    await step('date', async () => one(await sql`SELECT ${TS}::timestamptz AS v`));
    await step('json', async () => one(await sql`SELECT ${OBJ}::json AS v`));
    await step('jsonb', async () => one(await sql`SELECT ${OBJ}::jsonb AS v`));
    await step('int_array', async () => one(await sql`SELECT ${[1, 2, 3]}::int[] AS v`));
    await step('text_array', async () => one(await sql`SELECT ${['a', 'b"c', null, 'd,e']}::text[] AS v`));
    // The template form appends ::bytea itself (neon-http.md §1.3).
    await step('buffer', async () => one(await sql`SELECT ${Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0x01])} AS v`));
    await step('two_params', async () => {
      const rows = await sql`SELECT ${7}::int AS a, ${'x'}::text AS b`;
      return { a: describe(rows[0].a), b: describe(rows[0].b), rows: rows.length };
    });
  },

  // The same through sql.query(text, params).
  async query() {
    const sql = neon(conn);
    const q = async (text, params) => one(await sql.query(text, params));
    await step('null', () => q('SELECT $1::text AS v', [null]));
    await step('undefined', () => q('SELECT $1::text AS v', [undefined]));
    await step('true', () => q('SELECT $1::bool AS v', [true]));
    await step('false', () => q('SELECT $1::bool AS v', [false]));
    await step('int', () => q('SELECT $1::int AS v', [-42]));
    await step('float', () => q('SELECT $1::float8 AS v', [3.25]));
    await step('int8', () => q('SELECT $1::int8 AS v', [9007199254740993n]));
    await step('bigint_numeric', () => q('SELECT $1::numeric(20,0) AS v', [12345678901234567890n]));
    await step('numeric', () => q('SELECT $1::numeric(10,2) AS v', [1.5]));
    await step('text', () => q('SELECT $1::text AS v', [TEXT]));
    await step('untyped', () => q('SELECT $1 AS v', [42]));
    await step('date', () => q('SELECT $1::timestamptz AS v', [TS]));
    await step('json', () => q('SELECT $1::json AS v', [OBJ]));
    await step('jsonb', () => q('SELECT $1::jsonb AS v', [OBJ]));
    await step('int_array', () => q('SELECT $1::int[] AS v', [[1, 2, 3]]));
    await step('text_array', () => q('SELECT $1::text[] AS v', [['a', 'b"c', null, 'd,e']]));
    await step('buffer', () => q('SELECT $1::bytea AS v', [Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0x01])]));
    await step('no_params', () => q("SELECT 'plain' AS v"));
  },

  // fullResults / arrayMode, at neon() level and per query; command and rowCount.
  async options() {
    const sql = neon(conn);
    const full = neon(conn, { fullResults: true });
    const arr = neon(conn, { arrayMode: true });
    await step('select_full', async () =>
      describeFull(await full`SELECT ${1}::int AS a, ${'x'}::text AS b UNION ALL SELECT 2, 'y'`));
    await step('select_full_array', async () =>
      describeFull(await sql.query('SELECT $1::int AS a, $2::text AS b', [5, 'z'], { fullResults: true, arrayMode: true })));
    await step('select_array', async () => (await arr`SELECT ${1}::int AS a, ${'x'}::text AS b`).map((r) => r.map(describe)));
    await step('select_array_query', async () =>
      (await sql.query('SELECT $1::int AS a, $2::bool AS b', [9, true], { arrayMode: true })).map((r) => r.map(describe)));
    await step('create_full', async () => describeFull(await full.query(`CREATE TABLE ${table} (id int, name text)`)));
    await step('insert_full', async () =>
      describeFull(await full.query(`INSERT INTO ${table} (id, name) VALUES ($1, $2), ($3, $4), ($5, $6)`,
        [1, 'a', 2, 'b', 3, 'c'])));
    await step('select_rows_full', async () => describeFull(await full.query(`SELECT id, name FROM ${table} ORDER BY id`)));
    await step('insert_returning_full', async () =>
      describeFull(await full.query(`INSERT INTO ${table} (id, name) VALUES ($1, $2) RETURNING id, name`, [4, 'd'])));
  },

  // sql.transaction([...]) batches.
  async transaction() {
    const sql = neon(conn);
    await step('create', async () => sql.query(`CREATE TABLE ${table} (id int PRIMARY KEY, name text)`));
    await step('batch', async () => {
      const out = await sql.transaction([
        sql`INSERT INTO ${sql.unsafe(table)} (id, name) VALUES (${1}, ${'one'})`,
        sql.query(`INSERT INTO ${table} (id, name) VALUES ($1, $2)`, [2, 'two']),
        sql`SELECT ${'first'}::text AS v`,
        sql`SELECT count(*)::int AS n FROM ${sql.unsafe(table)}`,
      ]);
      return out.map((rows) => rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, describe(v)]))));
    });
    await step('batch_options', async () => {
      const out = await sql.transaction(
        (txn) => [txn`SELECT ${1}::int AS v`, txn`SELECT count(*)::int AS v FROM ${sql.unsafe(table)}`],
        { isolationLevel: 'Serializable', readOnly: true },
      );
      return out.map((rows) => rows.map((r) => describe(r.v)));
    });
    await step('batch_full_array', async () => {
      const out = await sql.transaction(
        [sql`SELECT ${'a'}::text AS s`, sql`SELECT id FROM ${sql.unsafe(table)} ORDER BY id`],
        { fullResults: true, arrayMode: true, isolationLevel: 'ReadCommitted' },
      );
      return out.map(describeFull);
    });
    // The second insert duplicates the primary key: the first (id 3) must be rolled back.
    await step('batch_failing', async () => sql.transaction([
      sql`INSERT INTO ${sql.unsafe(table)} (id, name) VALUES (${3}, ${'three'})`,
      sql`INSERT INTO ${sql.unsafe(table)} (id, name) VALUES (${1}, ${'dup'})`,
    ]));
    // A missing table in the last query of the batch: also all or nothing.
    await step('batch_failing_missing', async () => sql.transaction([
      sql`INSERT INTO ${sql.unsafe(table)} (id, name) VALUES (${4}, ${'four'})`,
      sql`SELECT * FROM ${sql.unsafe(table + '_missing')}`,
    ]));
    // A read-only batch that writes must fail and leave nothing behind.
    await step('batch_read_only_write', async () => sql.transaction(
      [sql`INSERT INTO ${sql.unsafe(table)} (id, name) VALUES (${5}, ${'five'})`],
      { readOnly: true },
    ));
    await step('after', async () =>
      (await sql.query(`SELECT id, name FROM ${table} ORDER BY id`)).map((r) => [describe(r.id), describe(r.name)]));
  },

  // Errors as the driver surfaces them.
  async errors() {
    const sql = neon(conn);
    await step('missing_table', async () => sql.query(`SELECT * FROM ${table}_does_not_exist`));
    await step('syntax', async () => sql.query('SELEC 1'));
    await step('bad_cast', async () => sql.query('SELECT $1::int AS v', ['not a number']));
    await step('create', async () => sql.query(`CREATE TABLE ${table} (id int)`));
    const readSql = neon(readConn);
    await step('read_token_select', async () => (await readSql.query(`SELECT count(*)::int AS n FROM ${table}`)).map((r) => describe(r.n)));
    await step('read_token_insert', async () => readSql.query(`INSERT INTO ${table} (id) VALUES ($1)`, [1]));
    await step('after', async () => (await sql.query(`SELECT count(*)::int AS n FROM ${table}`)).map((r) => describe(r.n)));
  },

  // Credentials: connection-string password, authToken (Bearer), wrong password.
  async auth() {
    const u = new URL(conn);
    const noPassword = `postgresql://${u.username}@${u.host}${u.pathname}`;
    const wrong = new URL(conn);
    wrong.password = 'sqlgate_not_a_real_token';
    const probe = async (s) => one(await s`SELECT ${'ok'}::text AS v`);
    await step('password', () => probe(neon(conn)));
    await step('auth_token', () => probe(neon(noPassword, { authToken: token })));
    await step('auth_token_fn', () => probe(neon(noPassword, { authToken: async () => token })));
    await step('wrong_password', () => probe(neon(wrong.toString())));
    await step('wrong_auth_token', () => probe(neon(noPassword, { authToken: 'sqlgate_not_a_real_token' })));
    await step('no_credentials', () => probe(neon(noPassword)));
  },

  // DDL + DML round trip with parameters.
  async roundtrip() {
    const sql = neon(conn);
    const t = sql.unsafe(table);
    await step('create', async () =>
      sql`CREATE TABLE ${t} (id int8 PRIMARY KEY, name text, score float8, active bool, meta json, created timestamptz)`);
    const rows = [
      [1n, 'alpha', 1.5, true, { k: 1 }, new Date('2024-05-06T07:08:09.010Z')],
      [2n, `O'Brien "quoted" ✓`, -0.25, false, { k: [true, null] }, new Date('1999-12-31T23:59:59.999Z')],
      [3n, null, null, null, null, undefined],
    ];
    await step('insert', async () => {
      const counts = [];
      for (const r of rows) {
        const res = await sql.query(
          `INSERT INTO ${table} (id, name, score, active, meta, created) VALUES ($1, $2, $3, $4, $5, $6)`,
          r, { fullResults: true });
        counts.push(res.rowCount);
      }
      return counts;
    });
    await step('select', async () =>
      (await sql`SELECT id, name, score, active, meta, created FROM ${t} WHERE id <= ${10} ORDER BY id`)
        .map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, describe(v)]))));
    await step('insert_returning', async () =>
      (await sql`INSERT INTO ${t} (id, name) VALUES (${4n}, ${'delta'}) RETURNING id, name`).map((r) => [describe(r.id), describe(r.name)]));
    await step('count', async () => one(await sql`SELECT count(*)::int AS v FROM ${t} WHERE name IS NOT NULL`));
  },
};

if (!scenarios[scenario]) {
  console.error(`unknown scenario ${scenario}; one of ${Object.keys(scenarios).join(', ')}`);
  process.exit(2);
}
await scenarios[scenario]();
process.stdout.write(JSON.stringify({ scenario, results }) + '\n');
