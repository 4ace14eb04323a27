/**
 * Row counts of the largest tables, recorded when a backup is taken and compared when it is
 * restored (restore drills). Over a SQL runner, so the same code counts on the cluster's leader and
 * on a restored scratch copy:
 * - the LARGEST_PER_DB largest user tables (pg_table_size) of every database that accepts
 *   connections (not templates), pgha's own marker table left out (it changes with every backup);
 * - exact counts (`count(*)`), each table named `schema.table` as an identifier.
 *
 * A backup records them twice: at its marker (in the marker row, so a restored copy carries them)
 * and after the backup ended (a file beside Barman's backup): the restored copy's state lies between
 * the two, so a table written only one way during the backup (inserts, or deletes) must restore
 * with a count between them — equal to both when nothing wrote to it.
 */

/** Runs SQL in one database; tab-separated rows out. */
export type SqlRunner = (database: string, sql: string) => Promise<string[][]>;

export interface TableCount {
  database: string;
  /** schema.table as written in SQL (quoted identifiers). */
  table: string;
  rows: number;
}

export const LARGEST_PER_DB = 5;
export const MARKER_TABLE = 'pgha_backup_marker';

/** An SQL identifier, quoted. */
export const ident = (s: string) => `"${s.replace(/"/g, '""')}"`;
export const literal = (s: string) => `'${s.replace(/'/g, "''")}'`;

/** The databases that accept connections, templates excluded. */
export async function connectableDatabases(sql: SqlRunner): Promise<string[]> {
  const rows = await sql(
    'postgres',
    'select datname from pg_database where datallowconn and not datistemplate order by datname;',
  );
  return rows.map((r) => r[0]!);
}

/** Exact counts of the given tables (grouped by database), in one transaction per database. */
export async function countTables(
  sql: SqlRunner,
  tables: { database: string; table: string }[],
): Promise<TableCount[]> {
  const out: TableCount[] = [];
  const dbs = [...new Set(tables.map((t) => t.database))];
  for (const db of dbs) {
    const mine = tables.filter((t) => t.database === db);
    const q = mine.map((t, i) => `select ${i}, count(*) from ${t.table}`).join('\nunion all ');
    const rows = await sql(db, `begin isolation level repeatable read read only;\n${q};\ncommit;`);
    for (const r of rows) {
      const t = mine[Number(r[0])];
      if (t) out.push({ database: db, table: t.table, rows: Number(r[1]) });
    }
  }
  return out;
}

/** The largest user tables of every database, counted. */
export async function largestTableCounts(sql: SqlRunner): Promise<TableCount[]> {
  const tables: { database: string; table: string }[] = [];
  for (const db of await connectableDatabases(sql)) {
    const rows = await sql(
      db,
      `select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema')
          and n.nspname not like 'pg\\_%' and c.relname <> ${literal(MARKER_TABLE)}
        order by pg_table_size(c.oid) desc, 1, 2 limit ${LARGEST_PER_DB};`,
    );
    for (const r of rows) tables.push({ database: db, table: `${ident(r[0]!)}.${ident(r[1]!)}` });
  }
  return countTables(sql, tables);
}

/** What a backup recorded of a table: its count at the marker and after the backup ended. */
export interface RecordedCount {
  database: string;
  table: string;
  atMarker?: number;
  atEnd: number;
}

/** The two recordings side by side (a table seen only after the backup has no `atMarker`). */
export function mergeCounts(atMarker: TableCount[] | undefined, atEnd: TableCount[]): RecordedCount[] {
  return atEnd.map((e) => {
    const m = atMarker?.find((x) => x.database === e.database && x.table === e.table);
    return { database: e.database, table: e.table, ...(m ? { atMarker: m.rows } : {}), atEnd: e.rows };
  });
}

export interface CountCheck extends RecordedCount {
  restored?: number;
  ok: boolean;
}

/**
 * The restored counts against the recorded ones: a table must be there, with a count between its
 * count at the marker and after the backup (equal to the one recorded after it when the marker's is
 * unknown).
 */
export function compareCounts(recorded: RecordedCount[], restored: TableCount[]): CountCheck[] {
  return recorded.map((r) => {
    const got = restored.find((x) => x.database === r.database && x.table === r.table)?.rows;
    const lo = Math.min(r.atMarker ?? r.atEnd, r.atEnd);
    const hi = Math.max(r.atMarker ?? r.atEnd, r.atEnd);
    return {
      ...r,
      ...(got === undefined ? {} : { restored: got }),
      ok: got !== undefined && got >= lo && got <= hi,
    };
  });
}
