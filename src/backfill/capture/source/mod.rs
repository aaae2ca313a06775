//! What a capture reads from: PostgreSQL ([`postgres::PgSource`]) or a SQLite file
//! ([`sqlite::SqliteSource`]). A source is a handful of primitives, opened on one consistent,
//! read-only snapshot: its refinery history, its catalog, the spelling of the few SQL pieces that
//! differ between the two (a key as text, the per-row hash, a chunk of keys joined to a table),
//! and running a query with a chunk of keys bound, in bounded fetches. The selection, the
//! scrubbing and the writing live once, above it, in [`super`].

pub mod postgres;
pub mod sqlite;

use crate::backfill::db::target::TargetInfo;
use crate::backfill::error::Result;
use crate::sql::Dialect;

use super::catalog::{Catalog, CatalogColumn, CatalogTable};

/// One row of refinery's history on the source.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub version: i64,
    pub name: Option<String>,
    /// As refinery stored it (the text of a `u64`).
    pub checksum: Option<String>,
}

/// Receives the rows of a query a batch at a time.
pub type KeySink<'a> = dyn FnMut(&[Vec<String>]) -> Result<()> + 'a;
/// Receives one row of values as text (`None` for NULL).
pub type RowSink<'a> = dyn FnMut(&[Option<&str>]) -> Result<()> + 'a;

/// A capture's source, inside its read-only snapshot.
///
/// Errors of the source's own statements come back with [`ErrorKind::Statement`] and the
/// database's message alone, so the caller can say which step failed; errors of a sink are
/// passed through as they are.
///
/// [`ErrorKind::Statement`]: crate::backfill::error::ErrorKind::Statement
pub trait Source {
    /// Where the rows come from, safe to print and to write in the manifest.
    fn info(&self) -> TargetInfo;

    /// The SQL dialect a root's `where` is written in.
    fn dialect(&self) -> Dialect;

    /// refinery's history, by version; `None` when the source has no history table.
    fn history(&mut self) -> Result<Option<Vec<Applied>>>;

    /// The snapshot's time on the source's clock, as `YYYY-MM-DDTHH:MM:SSZ`.
    fn snapshot_time(&mut self) -> Result<String>;

    /// The tables of `schema` (default: the source's own), their keys and foreign keys.
    fn catalog(&mut self, schema: Option<&str>) -> Result<Catalog>;

    /// `expr` as text, the way the key store and the hash read it (`5` for an integer).
    fn text(&self, expr: &str) -> String;

    /// The first 32 bits of md5(`text`) as a non-negative integer: where a row falls in the
    /// sample. Both sources compute the same value for the same text.
    fn hash(&self, text: &str) -> String;

    /// How `column` of `alias` is selected for the fixtures (then read as text).
    fn value(&self, column: &CatalogColumn, alias: &str) -> String;

    /// Joins `alias` (a row of `table`) to a chunk of `keys` of its key: `xtask_keys.xtask_ord`
    /// is a key's position in the chunk.
    fn key_join(&self, table: &CatalogTable, alias: &str, keys: usize) -> String;

    /// Runs `sql`, whose key join (if any) is bound to `keys`, and hands its rows (each column
    /// as text) to `sink` in batches of at most `fetch` rows.
    fn keys(
        &mut self,
        sql: &str,
        keys: &[Vec<String>],
        fetch: usize,
        sink: &mut KeySink<'_>,
    ) -> Result<()>;

    /// Runs `sql` like [`Source::keys`] and hands each row's values to `sink`, reading at most
    /// `fetch` rows ahead.
    fn rows(
        &mut self,
        sql: &str,
        keys: &[Vec<String>],
        fetch: usize,
        sink: &mut RowSink<'_>,
    ) -> Result<()>;
}
