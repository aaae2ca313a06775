//! The [`Catalog`] of a PostgreSQL database: one connection, one `READ ONLY` transaction with a
//! `statement_timeout` and a `lock_timeout`, catalog reads only.
//!
//! Per table: `pg_class.reltuples`, `pg_table_size`, `pg_indexes_size` and the number of indexes
//! (the size functions read file sizes, not rows), and the declared widths of its columns. Per
//! DML statement: `EXPLAIN (FORMAT JSON)` without `ANALYZE`, which plans and runs nothing;
//! PostgreSQL allows it for an UPDATE, DELETE or INSERT in a read-only transaction. Planning a DML
//! statement takes the lock its execution would start with (ROW EXCLUSIVE, which conflicts only
//! with SHARE and stronger locks), held until the read-only transaction ends, milliseconds later;
//! the `lock_timeout` bounds any wait for it. A statement the target cannot plan (it names
//! something the migration creates) is rolled back to a savepoint and estimated from the whole
//! table.

use std::time::Duration;

use postgres::Client;

use super::{Catalog, TableStats};
use crate::backfill::db::postgres::{connect, describe_pg};
use crate::backfill::db::quote_ident;
use crate::sql::Name;

/// The `statement_timeout` and `lock_timeout` of every statement an estimate runs.
pub const TIMEOUT: Duration = Duration::from_secs(5);

pub struct PgCatalog {
    client: Client,
}

impl PgCatalog {
    /// Connects to `url` (its password is registered for scrubbing before anything can print it)
    /// and opens the read-only transaction.
    pub fn connect(url: &str) -> anyhow::Result<PgCatalog> {
        let mut client = connect(url).map_err(|e| anyhow::anyhow!("{e}"))?;
        let ms = TIMEOUT.as_millis();
        client
            .batch_execute(&format!(
                "BEGIN READ ONLY; SET LOCAL statement_timeout = {ms}; SET LOCAL lock_timeout = {ms}"
            ))
            .map_err(|e| anyhow::anyhow!("start a read-only transaction: {}", describe_pg(&e)))?;
        Ok(PgCatalog { client })
    }

    /// Ends the read-only transaction (it changed nothing).
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.client
            .batch_execute("ROLLBACK")
            .map_err(|e| anyhow::anyhow!("end the read-only transaction: {}", describe_pg(&e)))
    }
}

/// `name` as `to_regclass` reads it: each part quoted, so case and dots are kept as parsed.
fn regclass_text(name: &Name) -> String {
    match &name.schema {
        Some(schema) => format!("{}.{}", quote_ident(schema), quote_ident(&name.name)),
        None => quote_ident(&name.name),
    }
}

impl Catalog for PgCatalog {
    fn stats(&mut self, table: &Name) -> anyhow::Result<Option<TableStats>> {
        let row = self
            .client
            .query_opt(
                "SELECT format('%I.%I', n.nspname, c.relname), c.reltuples::float8,
                        pg_table_size(c.oid), pg_indexes_size(c.oid),
                        (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid),
                        (SELECT coalesce(sum(CASE WHEN a.attlen > 0 THEN a.attlen ELSE 32 END), 0)
                           FROM pg_attribute a
                          WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)::int8
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p', 'm')",
                &[&regclass_text(table)],
            )
            .map_err(|e| anyhow::anyhow!("read the statistics of {table}: {}", describe_pg(&e)))?;
        Ok(row.map(|row| TableStats {
            name: row.get(0),
            reltuples: row.get(1),
            heap_bytes: row.get::<_, i64>(2).max(0) as u64,
            index_bytes: row.get::<_, i64>(3).max(0) as u64,
            indexes: row.get::<_, i64>(4).max(0) as u64,
            row_width_guess: 28 + row.get::<_, i64>(5).max(0) as u64,
        }))
    }

    fn index_table(&mut self, index: &Name) -> anyhow::Result<Option<Name>> {
        let row = self
            .client
            .query_opt(
                "SELECT n.nspname::text, c.relname::text
                   FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE i.indexrelid = to_regclass($1)",
                &[&regclass_text(index)],
            )
            .map_err(|e| anyhow::anyhow!("find the table of index {index}: {}", describe_pg(&e)))?;
        Ok(row.map(|row| Name::qualified(row.get::<_, String>(0), row.get::<_, String>(1))))
    }

    fn set_search_path(&mut self, schemas: Option<&[String]>) -> anyhow::Result<()> {
        // `SET LOCAL`: undone with the read-only transaction, and `RESET` goes back to the
        // target's own path (the role's or the database's default).
        let sql = match schemas {
            Some(schemas) if !schemas.is_empty() => format!(
                "SET LOCAL search_path TO {}",
                schemas
                    .iter()
                    .map(|s| quote_ident(s))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some(_) => "SET LOCAL search_path TO ''".to_string(),
            None => "RESET search_path".to_string(),
        };
        self.client
            .batch_execute(&sql)
            .map_err(|e| anyhow::anyhow!("set the search path: {}", describe_pg(&e)))
    }

    fn planned_rows(&mut self, sql: &str) -> anyhow::Result<Option<f64>> {
        self.client
            .batch_execute("SAVEPOINT estimate")
            .map_err(|e| anyhow::anyhow!("set a savepoint: {}", describe_pg(&e)))?;
        // The extended protocol: one statement, whatever the text holds.
        let planned = self
            .client
            .query_one(&format!("EXPLAIN (FORMAT JSON) {sql}"), &[]);
        let rows = match planned {
            Ok(row) => {
                let plan: serde_json::Value = row
                    .try_get::<_, JsonText>(0)
                    .ok()
                    .and_then(|text| serde_json::from_str(&text.0).ok())
                    .unwrap_or_default();
                touched_rows(&plan)
            }
            Err(e) => {
                if e.as_db_error().is_none() {
                    anyhow::bail!("plan a statement: {}", describe_pg(&e));
                }
                None
            }
        };
        self.client
            .batch_execute(if rows.is_some() {
                "RELEASE SAVEPOINT estimate"
            } else {
                "ROLLBACK TO SAVEPOINT estimate"
            })
            .map_err(|e| anyhow::anyhow!("end a savepoint: {}", describe_pg(&e)))?;
        Ok(rows)
    }
}

/// EXPLAIN's `json` column as its text (the binary format of `json` is the text itself).
struct JsonText(String);

impl<'a> postgres::types::FromSql<'a> for JsonText {
    fn from_sql(
        _: &postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(JsonText(std::str::from_utf8(raw)?.to_owned()))
    }

    fn accepts(ty: &postgres::types::Type) -> bool {
        matches!(
            *ty,
            postgres::types::Type::JSON | postgres::types::Type::TEXT
        )
    }
}

/// The rows a DML plan touches: the `Plan Rows` of the node that feeds its `ModifyTable` (what
/// the statement reads to write; not an InitPlan or SubPlan beside it), or of the top node for a
/// plan without one.
fn touched_rows(plan: &serde_json::Value) -> Option<f64> {
    let top = plan.get(0)?.get("Plan")?;
    let node = if top.get("Node Type")?.as_str()? == "ModifyTable" {
        top.get("Plans")
            .and_then(|p| p.as_array())
            .and_then(|children| {
                children.iter().find(|c| {
                    !matches!(
                        c.get("Parent Relationship").and_then(|r| r.as_str()),
                        Some("InitPlan" | "SubPlan")
                    )
                })
            })
            .unwrap_or(top)
    } else {
        top
    };
    node.get("Plan Rows")?.as_f64()
}

#[cfg(test)]
mod tests {
    #[test]
    fn touched_rows_are_those_under_the_modify_table() {
        let plan = serde_json::json!([{"Plan": {"Node Type": "ModifyTable", "Plan Rows": 0,
            "Plans": [{"Node Type": "Seq Scan", "Plan Rows": 1234.0}]}}]);
        assert_eq!(super::touched_rows(&plan), Some(1234.0));
        // A scalar subquery's InitPlan comes first: the rows are those of the scan beside it.
        let plan = serde_json::json!([{"Plan": {"Node Type": "ModifyTable", "Plan Rows": 0,
            "Plans": [{"Node Type": "Result", "Parent Relationship": "InitPlan", "Plan Rows": 1},
                      {"Node Type": "Seq Scan", "Parent Relationship": "Outer", "Plan Rows": 500}]}}]);
        assert_eq!(super::touched_rows(&plan), Some(500.0));
        let plan = serde_json::json!([{"Plan": {"Node Type": "Seq Scan", "Plan Rows": 5}}]);
        assert_eq!(super::touched_rows(&plan), Some(5.0));
        assert_eq!(super::touched_rows(&serde_json::json!({})), None);
    }
}
