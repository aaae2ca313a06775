//! The source's catalog, as far as a capture needs it: the tables of one schema, their columns
//! and primary keys, and the foreign keys between them (read from `pg_catalog`, in the capture's
//! snapshot).

use std::collections::BTreeMap;

use postgres::Transaction;

use crate::backfill::db::postgres::pg_error;
use crate::backfill::error::{Error, ErrorKind, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct CatalogColumn {
    pub name: String,
    /// `format_type`: what a text value is cast to (`bigint`, `character varying(20)`).
    pub type_name: String,
    /// Strings, network addresses and JSON: what personal data is stored as.
    pub text_like: bool,
    pub not_null: bool,
    /// A generated column is computed again where the fixtures load: never captured.
    pub generated: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CatalogTable {
    pub name: String,
    pub columns: Vec<CatalogColumn>,
    /// Indices into `columns`; empty when the table has no primary key.
    pub primary_key: Vec<usize>,
}

impl CatalogTable {
    pub fn column(&self, name: &str) -> Option<&CatalogColumn> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn key_columns(&self) -> Vec<&CatalogColumn> {
        self.primary_key.iter().map(|&i| &self.columns[i]).collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ForeignKey {
    pub name: String,
    pub child: String,
    pub child_columns: Vec<String>,
    pub parent: String,
    pub parent_columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    pub schema: String,
    pub tables: BTreeMap<String, CatalogTable>,
    pub foreign_keys: Vec<ForeignKey>,
}

fn db_error(e: postgres::Error) -> Error {
    pg_error(e, ErrorKind::Database).context("read the source's catalog")
}

impl Catalog {
    /// Reads the catalog of `schema` (default: the current schema).
    pub fn read(tx: &mut Transaction<'_>, schema: Option<&str>) -> Result<Catalog> {
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
                        a.attnotnull, a.attgenerated <> ''
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
                })
                .columns
                .push(CatalogColumn {
                    name: row.get(1),
                    type_name: row.get(2),
                    text_like: row.get(3),
                    not_null: row.get(4),
                    generated: row.get(5),
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

    pub fn table(&self, name: &str) -> Option<&CatalogTable> {
        self.tables.get(name)
    }

    /// The schema-qualified, quoted name of `table`.
    pub fn qualified(&self, table: &str) -> String {
        format!(
            "{}.{}",
            crate::backfill::db::quote_ident(&self.schema),
            crate::backfill::db::quote_ident(table)
        )
    }

    /// The foreign keys going out of `table`.
    pub fn outgoing(&self, table: &str) -> Vec<&ForeignKey> {
        self.foreign_keys
            .iter()
            .filter(|fk| fk.child == table)
            .collect()
    }
}
