//! A PostgreSQL source: one `REPEATABLE READ READ ONLY` transaction (opened by the caller, with
//! `statement_timeout` and `lock_timeout`), the catalog from `pg_catalog`, keys bound as one text
//! array per key column, rows streamed through a server-side portal.

use std::collections::BTreeMap;

use postgres::Transaction;
use postgres::types::ToSql;

use super::{Applied, KeySink, RowSink, Source};
use crate::backfill::capture::catalog::{
    Catalog, CatalogColumn, CatalogTable, ForeignKey, unique_key,
};
use crate::backfill::db::postgres::pg_error;
use crate::backfill::db::quote_ident;
use crate::backfill::db::target::TargetInfo;
use crate::backfill::error::{Error, ErrorKind, Result};
use crate::sql::Dialect;

/// The source, inside the caller's transaction.
pub struct PgSource<'t, 'c> {
    pub tx: &'t mut Transaction<'c>,
    pub info: TargetInfo,
}

fn statement_error(e: postgres::Error) -> Error {
    pg_error(e, ErrorKind::Statement)
}

fn db_error(e: postgres::Error) -> Error {
    pg_error(e, ErrorKind::Database).context("read the source's catalog")
}

/// Keys as one text array per key column, moved out of the chunk (one copy of it in memory).
fn key_arrays(keys: &[Vec<String>]) -> Vec<Vec<&str>> {
    let width = keys.first().map_or(0, Vec::len);
    let mut arrays: Vec<Vec<&str>> = (0..width).map(|_| Vec::with_capacity(keys.len())).collect();
    for key in keys {
        for (array, value) in arrays.iter_mut().zip(key) {
            array.push(value);
        }
    }
    arrays
}

impl PgSource<'_, '_> {
    /// Binds `keys` to `sql` and hands each fetch of at most `fetch` rows to `each`.
    fn fetch(
        &mut self,
        sql: &str,
        keys: &[Vec<String>],
        fetch: usize,
        each: &mut dyn FnMut(Vec<postgres::Row>) -> Result<()>,
    ) -> Result<()> {
        let arrays = key_arrays(keys);
        let params: Vec<&(dyn ToSql + Sync)> =
            arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        let statement = self.tx.prepare(sql).map_err(statement_error)?;
        let portal = self.tx.bind(&statement, &params).map_err(statement_error)?;
        loop {
            let rows = self
                .tx
                .query_portal(&portal, fetch as i32)
                .map_err(statement_error)?;
            if rows.is_empty() {
                return Ok(());
            }
            each(rows)?;
        }
    }
}

impl Source for PgSource<'_, '_> {
    fn info(&self) -> TargetInfo {
        self.info.clone()
    }

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn history(&mut self) -> Result<Option<Vec<Applied>>> {
        let exists: bool = self
            .tx
            .query_one(
                "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
                &[],
            )
            .map(|r| r.get(0))
            .map_err(|e| pg_error(e, ErrorKind::Database))?;
        if !exists {
            return Ok(None);
        }
        let rows = self
            .tx
            .query(
                "SELECT version, name::text, checksum::text FROM refinery_schema_history ORDER BY version",
                &[],
            )
            .map_err(|e| {
                pg_error(e, ErrorKind::Database).context("read refinery_schema_history")
            })?;
        Ok(Some(
            rows.iter()
                .map(|row| Applied {
                    version: i64::from(row.get::<_, i32>(0)),
                    name: row.get(1),
                    checksum: row.get(2),
                })
                .collect(),
        ))
    }

    fn snapshot_time(&mut self) -> Result<String> {
        Ok(self
            .tx
            .query_one(
                "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
                &[],
            )
            .map_err(|e| pg_error(e, ErrorKind::Database))?
            .get(0))
    }

    fn catalog(&mut self, schema: Option<&str>) -> Result<Catalog> {
        read_catalog(self.tx, schema)
    }

    fn text(&self, expr: &str) -> String {
        format!("{expr}::text")
    }

    fn hash(&self, text: &str) -> String {
        format!("('x' || substr(md5({text}), 1, 8))::bit(32)::bigint")
    }

    fn value(&self, column: &CatalogColumn, alias: &str) -> String {
        format!("{alias}.{}::text", quote_ident(&column.name))
    }

    fn key_join(&self, table: &CatalogTable, alias: &str, _keys: usize) -> String {
        let keys = table.key_columns();
        let params: Vec<String> = (0..keys.len())
            .map(|i| format!("${}::text[]", i + 1))
            .collect();
        let names: Vec<String> = (0..keys.len()).map(|i| format!("k{i}")).collect();
        let on: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(i, c)| {
                format!(
                    "{alias}.{} = xtask_keys.k{i}::{}",
                    quote_ident(&c.name),
                    c.type_name
                )
            })
            .collect();
        format!(
            "JOIN unnest({}) WITH ORDINALITY AS xtask_keys({}, xtask_ord) ON {}",
            params.join(", "),
            names.join(", "),
            on.join(" AND ")
        )
    }

    fn keys(
        &mut self,
        sql: &str,
        keys: &[Vec<String>],
        fetch: usize,
        sink: &mut KeySink<'_>,
    ) -> Result<()> {
        self.fetch(sql, keys, fetch, &mut |rows| {
            let batch: Vec<Vec<String>> = rows
                .iter()
                .map(|row| (0..row.len()).map(|i| row.get::<_, String>(i)).collect())
                .collect();
            sink(&batch)
        })
    }

    fn rows(
        &mut self,
        sql: &str,
        keys: &[Vec<String>],
        fetch: usize,
        sink: &mut RowSink<'_>,
    ) -> Result<()> {
        self.fetch(sql, keys, fetch, &mut |rows| {
            let mut values: Vec<Option<&str>> = Vec::new();
            for row in &rows {
                values.clear();
                values.extend((0..row.len()).map(|i| row.get::<_, Option<&str>>(i)));
                sink(&values)?;
            }
            Ok(())
        })
    }
}

/// Reads the catalog of `schema` (default: the current schema).
fn read_catalog(tx: &mut Transaction<'_>, schema: Option<&str>) -> Result<Catalog> {
    let schema: String = match schema {
        Some(s) => s.to_string(),
        None => tx
            .query_one("SELECT current_schema()::text", &[])
            .map_err(db_error)?
            .get::<_, Option<String>>(0)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Database,
                    "the source's search path names no existing schema",
                )
            })?,
    };
    let mut tables: BTreeMap<String, CatalogTable> = BTreeMap::new();
    let rows = tx
        .query(
            "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod),
                    t.typcategory::text IN ('S', 'I') OR t.typname IN ('json', 'jsonb', 'xml'),
                    a.attnotnull, a.attgenerated <> '',
                    a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)
             FROM pg_class AS c
             JOIN pg_namespace AS n ON n.oid = c.relnamespace
             JOIN pg_attribute AS a ON a.attrelid = c.oid
             JOIN pg_type AS t ON t.oid = a.atttypid
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0
               AND NOT a.attisdropped
             ORDER BY c.relname, a.attnum",
            &[&schema],
        )
        .map_err(db_error)?;
    for row in rows {
        let table: String = row.get(0);
        tables
            .entry(table.clone())
            .or_insert_with(|| CatalogTable {
                name: table,
                columns: Vec::new(),
                primary_key: Vec::new(),
                unique_index: None,
            })
            .columns
            .push(CatalogColumn {
                name: row.get(1),
                type_name: row.get(2),
                text_like: row.get(3),
                not_null: row.get(4),
                generated: row.get(5),
                integer: row.get(6),
            });
    }
    let rows = tx
        .query(
            "SELECT c.relname::text, a.attname::text
             FROM pg_index AS i
             JOIN pg_class AS c ON c.oid = i.indrelid
             JOIN pg_namespace AS n ON n.oid = c.relnamespace
             CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum = k.attnum
             WHERE i.indisprimary AND n.nspname = $1
             ORDER BY c.relname, k.ord",
            &[&schema],
        )
        .map_err(db_error)?;
    for row in rows {
        let (table, column): (String, String) = (row.get(0), row.get(1));
        if let Some(t) = tables.get_mut(&table)
            && let Some(i) = t.columns.iter().position(|c| c.name == column)
        {
            t.primary_key.push(i);
        }
    }
    // A table without a primary key is keyed by a unique index over NOT NULL columns, when it
    // has one: not partial, no expression, not deferrable (every row satisfies it at once).
    let rows = tx
        .query(
            "SELECT c.relname::text, ic.relname::text,
                    ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                          JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum = k.attnum
                          ORDER BY k.ord)
             FROM pg_index AS i
             JOIN pg_class AS c ON c.oid = i.indrelid
             JOIN pg_class AS ic ON ic.oid = i.indexrelid
             JOIN pg_namespace AS n ON n.oid = c.relnamespace
             WHERE i.indisunique AND NOT i.indisprimary AND i.indimmediate AND i.indisvalid
               AND i.indpred IS NULL AND i.indexprs IS NULL AND n.nspname = $1
             ORDER BY c.relname, ic.relname",
            &[&schema],
        )
        .map_err(db_error)?;
    let mut candidates: BTreeMap<String, Vec<(String, Vec<usize>)>> = BTreeMap::new();
    for row in rows {
        let (table, index, names): (String, String, Vec<String>) =
            (row.get(0), row.get(1), row.get(2));
        let Some(t) = tables.get(&table) else {
            continue;
        };
        let columns: Option<Vec<usize>> = names
            .iter()
            .map(|name| t.columns.iter().position(|c| &c.name == name))
            .collect();
        if let Some(columns) = columns {
            candidates.entry(table).or_default().push((index, columns));
        }
    }
    for (table, candidates) in candidates {
        if let Some(t) = tables.get_mut(&table)
            && t.primary_key.is_empty()
            && let Some((index, columns)) = unique_key(&t.columns, candidates)
        {
            t.primary_key = columns;
            t.unique_index = Some(index);
        }
    }
    let rows = tx
        .query(
            "SELECT con.conname::text, child.relname::text, parent.relname::text,
                    pn.nspname::text,
                    ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY AS k(n, ord)
                          JOIN pg_attribute AS a ON a.attrelid = con.conrelid AND a.attnum = k.n
                          ORDER BY k.ord),
                    ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY AS k(n, ord)
                          JOIN pg_attribute AS a ON a.attrelid = con.confrelid AND a.attnum = k.n
                          ORDER BY k.ord)
             FROM pg_constraint AS con
             JOIN pg_class AS child ON child.oid = con.conrelid
             JOIN pg_namespace AS cn ON cn.oid = child.relnamespace
             JOIN pg_class AS parent ON parent.oid = con.confrelid
             JOIN pg_namespace AS pn ON pn.oid = parent.relnamespace
             WHERE con.contype = 'f' AND cn.nspname = $1
             ORDER BY child.relname, con.conname",
            &[&schema],
        )
        .map_err(db_error)?;
    let mut foreign_keys = Vec::new();
    for row in rows {
        let fk = ForeignKey {
            name: row.get(0),
            child: row.get(1),
            parent: row.get(2),
            child_columns: row.get(4),
            parent_columns: row.get(5),
        };
        let parent_schema: String = row.get(3);
        if parent_schema != schema {
            return Err(Error::new(
                ErrorKind::Database,
                format!(
                    "foreign key {} of table {} references {parent_schema}.{}, outside schema {schema}: a capture reads one schema",
                    fk.name, fk.child, fk.parent
                ),
            ));
        }
        foreign_keys.push(fk);
    }
    Ok(Catalog {
        schema,
        tables,
        foreign_keys,
    })
}
