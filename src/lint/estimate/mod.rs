//! `migrate lint --estimate`: what a backfill or lock finding costs on a given database.
//!
//! Each finding of a rule in [`LOCKS`] gets an [`Estimate`]: the rows and bytes its statement
//! touches, the lock it takes and on which tables, and a duration range. The figures come from a
//! [`Catalog`], the target's statistics read in one read-only transaction (`pg.rs`: `reltuples`,
//! relation and index sizes, the planner's row estimate of `EXPLAIN` without `ANALYZE`); nothing
//! scans a table.
//!
//! The duration model: a statement's work ([`Work`]) moves a number of bytes (for an UPDATE, the
//! heap and index bytes of the rows it touches; for a scan, the heap), at a rate in MB/s with a
//! low and a high bound ([`RATES`]); the duration range is `bytes / high .. bytes / low`. The rates
//! were measured on the 2-core machines CI runs on, under the load other builds put on them (1 to
//! 10): a 1,000,000-row, 99-106 MB UPDATE of every row (a primary key and one more index, so no
//! HOT update) took 10.6 s at load 7, 18 s at load 4.5 and 26 s at load 10 (4-9 MB/s); a DELETE of 500,000 rows 0.9 to
//! 1.3 s (27-43 MB/s of heap); `INSERT ... SELECT` of 1,000,000 rows 6 s (16 MB/s of heap and
//! index); a type change rewriting 140 MB 5.5 s (25 MB/s); `CREATE INDEX` 1.1 to 2.2 s over a
//! 76 MB heap (35-70 MB/s); `SET NOT NULL` and a filtered `count(*)` 0.1 to 0.26 s over the same
//! heap, cached (290-760 MB/s). Each range is widened past what was measured, to cover an idle
//! machine, a cold cache and a busier one. `examples/bench_estimate.rs` measures the UPDATE
//! against its estimate.

#[cfg(feature = "backfill")]
pub mod pg;

use serde::Serialize;

use crate::lint::schema::SearchPath;
use crate::lint::{Finding, Report, RuleId};
use crate::sql::{
    self, AlterAction, ConstraintKind, Dialect, InsertSource, Name, Origin, Statement, StmtKind,
};

/// What a statement does to a table's rows: it sets which bytes count and at what rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Work {
    /// UPDATE, MERGE: a new version of each touched row, and new entries in every index (an
    /// update is HOT, without index writes, only when no indexed column changes and the page has
    /// room: not counted on). Bytes: the touched share of heap and indexes.
    Update,
    /// DELETE: each touched row marked dead; indexes are not written. Bytes: the touched share of
    /// the heap.
    Delete,
    /// INSERT ... SELECT, CREATE TABLE AS, a rebuild's copy, COPY: rows read and written again.
    /// Bytes: the copied share of the source's heap and indexes.
    Copy,
    /// A table rewrite (a type change, a volatile default, a stored generated column): the heap
    /// written anew and every index rebuilt. Bytes: heap and indexes.
    Rewrite,
    /// SET NOT NULL, validating a constraint: every row read, nothing written. Bytes: the heap.
    Scan,
    /// CREATE INDEX, REINDEX, ADD UNIQUE / PRIMARY KEY: the heap read and sorted, an index
    /// written. Bytes: the heap, once per index built.
    IndexBuild,
    /// Only the catalog changes: done as soon as the lock is granted.
    Catalog,
    /// The statement fails on a table that has rows (nothing to time).
    Fails,
}

impl Work {
    fn what(self) -> &'static str {
        match self {
            Work::Update => "UPDATE",
            Work::Delete => "DELETE",
            Work::Copy => "copy",
            Work::Rewrite => "table rewrite",
            Work::Scan => "full scan",
            Work::IndexBuild => "index build",
            Work::Catalog => "catalog change",
            Work::Fails => "statement",
        }
    }
}

/// A rate of work in MB/s (10^6 bytes), low and high.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub work: Work,
    pub low_mb_s: f64,
    pub high_mb_s: f64,
}

/// The duration model's constants (see the module documentation for the measurements).
pub const RATES: &[Rate] = &[
    rate(Work::Update, 4.0, 25.0),
    rate(Work::Delete, 15.0, 80.0),
    rate(Work::Copy, 8.0, 40.0),
    rate(Work::Rewrite, 10.0, 60.0),
    rate(Work::Scan, 80.0, 800.0),
    rate(Work::IndexBuild, 20.0, 120.0),
];

const fn rate(work: Work, low_mb_s: f64, high_mb_s: f64) -> Rate {
    Rate {
        work,
        low_mb_s,
        high_mb_s,
    }
}

/// The statement shapes a rule's lock depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Whatever the statement.
    Any,
    CreateIndex,
    DropIndex,
    /// ADD UNIQUE / PRIMARY KEY (builds an index under the ALTER TABLE's lock).
    AddKey,
    /// ADD FOREIGN KEY (in ALTER TABLE, or a CREATE TABLE referencing an existing table).
    ForeignKey,
    Update,
    Delete,
    Insert,
}

/// Which tables a lock is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    /// The table the statement changes.
    Target,
    /// The table the statement changes and the one its foreign key references.
    TargetAndReferenced,
    /// The table rows are copied from (the target is new, or written under ROW EXCLUSIVE).
    Source,
}

/// What a rule's statement locks and what work it does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LockEntry {
    pub rule: RuleId,
    pub shape: Shape,
    /// The table lock mode, as PostgreSQL names it.
    pub mode: &'static str,
    pub on: On,
    /// Whether every touched row is also locked (UPDATE, DELETE, MERGE), until the transaction
    /// ends.
    pub row_locks: bool,
    pub work: Work,
}

const fn lock(
    rule: RuleId,
    shape: Shape,
    mode: &'static str,
    on: On,
    row_locks: bool,
    work: Work,
) -> LockEntry {
    LockEntry {
        rule,
        shape,
        mode,
        on,
        row_locks,
        work,
    }
}

/// The lock each rule's statement takes, and the work it does; the first entry of a rule whose
/// shape fits the statement applies (`Shape::Any` last). Rules not listed (naming, syntax,
/// suppressions, data migrations, `transaction-in-migration`) get no estimate. Every lock is held
/// until the migration's transaction ends.
pub const LOCKS: &[LockEntry] = {
    use On::*;
    use RuleId::*;
    use Shape::*;
    const RX: &str = "ROW EXCLUSIVE";
    const AX: &str = "ACCESS EXCLUSIVE";
    const SRX: &str = "SHARE ROW EXCLUSIVE";
    &[
        lock(BackfillUpdate, Any, RX, Target, true, Work::Update),
        lock(BackfillDelete, Any, RX, Target, true, Work::Delete),
        lock(BackfillMerge, Any, RX, Target, true, Work::Update),
        lock(
            BackfillInsertSelect,
            Any,
            "ACCESS SHARE",
            Source,
            false,
            Work::Copy,
        ),
        lock(
            BackfillCreateTableAs,
            Any,
            "ACCESS SHARE",
            Source,
            false,
            Work::Copy,
        ),
        lock(BackfillCopy, Any, RX, Target, false, Work::Copy),
        lock(BackfillDoBlock, Update, RX, Target, true, Work::Update),
        lock(BackfillDoBlock, Delete, RX, Target, true, Work::Delete),
        lock(
            BackfillDoBlock,
            Insert,
            "ACCESS SHARE",
            Source,
            false,
            Work::Copy,
        ),
        lock(BackfillDoBlock, Any, RX, Target, true, Work::Update),
        lock(
            BackfillAlterColumnType,
            Any,
            AX,
            Target,
            false,
            Work::Rewrite,
        ),
        lock(
            BackfillVolatileDefault,
            Any,
            AX,
            Target,
            false,
            Work::Rewrite,
        ),
        lock(
            BackfillStoredGeneratedColumn,
            Any,
            AX,
            Target,
            false,
            Work::Rewrite,
        ),
        lock(
            BackfillTableRebuild,
            Insert,
            "ACCESS SHARE",
            Source,
            false,
            Work::Copy,
        ),
        lock(BackfillTableRebuild, Any, AX, Target, false, Work::Rewrite),
        lock(
            IndexNotConcurrent,
            CreateIndex,
            "SHARE",
            Target,
            false,
            Work::IndexBuild,
        ),
        lock(
            IndexNotConcurrent,
            DropIndex,
            AX,
            Target,
            false,
            Work::Catalog,
        ),
        lock(
            IndexNotConcurrent,
            AddKey,
            AX,
            Target,
            false,
            Work::IndexBuild,
        ),
        lock(IndexNotConcurrent, Any, AX, Target, false, Work::IndexBuild),
        lock(
            ConcurrentlyInTransaction,
            Any,
            "SHARE UPDATE EXCLUSIVE",
            Target,
            false,
            Work::Fails,
        ),
        lock(
            ConstraintWithoutNotValid,
            ForeignKey,
            SRX,
            TargetAndReferenced,
            false,
            Work::Scan,
        ),
        lock(
            ConstraintWithoutNotValid,
            Any,
            AX,
            Target,
            false,
            Work::Scan,
        ),
        lock(SetNotNull, Any, AX, Target, false, Work::Scan),
        lock(
            RequireLockTimeout,
            ForeignKey,
            SRX,
            TargetAndReferenced,
            false,
            Work::Catalog,
        ),
        lock(RequireLockTimeout, Any, AX, Target, false, Work::Catalog),
        lock(
            ReindexNotConcurrent,
            Any,
            "SHARE",
            Target,
            false,
            Work::IndexBuild,
        ),
        lock(AddingRequiredColumn, Any, AX, Target, false, Work::Fails),
        lock(ContractWithoutGate, Any, AX, Target, false, Work::Scan),
    ]
};

/// The entry of `rule` for a statement of `shape`.
pub fn lock_of(rule: RuleId, shape: Shape) -> Option<&'static LockEntry> {
    LOCKS
        .iter()
        .find(|e| e.rule == rule && e.shape == shape)
        .or_else(|| {
            LOCKS
                .iter()
                .find(|e| e.rule == rule && e.shape == Shape::Any)
        })
}

/// A table's statistics as the target's catalog has them.
#[derive(Debug, Clone, PartialEq)]
pub struct TableStats {
    /// The table as the target names it (`public.users`).
    pub name: String,
    /// `pg_class.reltuples`; negative when the table was never analyzed (or vacuumed).
    pub reltuples: f64,
    /// The table's own size with its TOAST data (`pg_table_size`), in bytes.
    pub heap_bytes: u64,
    /// All its indexes (`pg_indexes_size`), in bytes.
    pub index_bytes: u64,
    pub indexes: u64,
    /// A row's size guessed from its column types (fixed widths, 32 bytes for a variable-width
    /// one, 28 bytes of header and line pointer): what estimates rows when `reltuples` is unknown.
    pub row_width_guess: u64,
}

impl TableStats {
    /// The table's rows, and how they were found.
    pub fn rows(&self) -> (f64, &'static str) {
        if self.reltuples >= 0.0 {
            (self.reltuples, "table statistics")
        } else {
            (
                self.heap_bytes as f64 / self.row_width_guess.max(1) as f64,
                "table size and column types (never analyzed: run ANALYZE for a better figure)",
            )
        }
    }
}

/// The target database, read-only.
pub trait Catalog {
    /// The statistics of `table` (resolved through the target's search path when unqualified),
    /// or `None` when there is no such table.
    fn stats(&mut self, table: &Name) -> anyhow::Result<Option<TableStats>>;
    /// The table an index belongs to, when the index exists.
    fn index_table(&mut self, index: &Name) -> anyhow::Result<Option<Name>>;
    /// The planner's estimate of the rows `sql` (one DML statement) touches, from
    /// `EXPLAIN (FORMAT JSON)` without `ANALYZE`; `None` when the target cannot plan it (it
    /// names a column or table the migration creates, a PL/pgSQL variable, ...).
    fn planned_rows(&mut self, sql: &str) -> anyhow::Result<Option<f64>>;
    /// The search path the next lookups and plans resolve unqualified names through: the
    /// schemas a `SET search_path` of the migration set, in order, or `None` for the target's
    /// own (the migration set none so far).
    fn set_search_path(&mut self, schemas: Option<&[String]>) -> anyhow::Result<()>;
}

/// A lock and the table it is on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LockOn {
    pub mode: &'static str,
    pub table: String,
}

/// What one finding's statement costs on the target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    /// The table the figures are of, as the target names it (as the migration names it when the
    /// target does not have it).
    pub table: String,
    /// False when the table does not exist on the target (the migration creates it, or the
    /// target is not the database the migrations run on): no figures then.
    pub exists: bool,
    pub work: Work,
    pub locks: Vec<LockOn>,
    /// The touched rows are locked too, until the transaction ends.
    pub row_locks: bool,
    /// The rows the statement touches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<f64>,
    /// Where `rows` comes from: `planner`, `table statistics`, `whole table (upper bound)`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_from: Option<&'static str>,
    /// The bytes the work moves (see [`Work`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_rows: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heap_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub indexes: Option<u64>,
    /// The duration range in seconds, from [`RATES`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds_low: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds_high: Option<f64>,
    /// One line for people: "UPDATE of ~1.00M rows (99 MB) holding row locks ~4-20 s; ...".
    pub text: String,
}

/// Adds an estimate to every finding of `report` whose rule is in [`LOCKS`], reading `catalog`.
/// Files are parsed again (the report keeps their text) to find each finding's statement.
pub fn annotate(
    report: &mut Report,
    dialect: Dialect,
    catalog: &mut dyn Catalog,
) -> anyhow::Result<()> {
    for file in &mut report.files {
        if !file
            .findings
            .iter()
            .any(|f| f.anchor.is_some() && LOCKS.iter().any(|e| e.rule == f.rule))
        {
            continue;
        }
        let parsed = crate::lint::parse_guarded(&file.text, dialect);
        for finding in &mut file.findings {
            let Some(stmt) = statement_of(&parsed.statements, finding) else {
                continue;
            };
            let Some(entry) = lock_of(finding.rule, shape(stmt)) else {
                continue;
            };
            // Names resolve as they would when the statement runs: through the search path
            // the file's earlier `SET search_path` statements left.
            let path = search_path_at(&parsed.statements, stmt.span.start);
            catalog.set_search_path(path.as_ref().map(SearchPath::schemas))?;
            let sql = match stmt.origin {
                Origin::TopLevel | Origin::Cte | Origin::DoBlock => {
                    file.text.get(stmt.span.clone())
                }
                Origin::DoExecute => None,
            };
            if let Some(estimate) = estimate(entry, stmt, sql, catalog)? {
                finding.estimate = Some(Box::new(estimate));
            }
        }
    }
    Ok(())
}

/// The search path a file's `SET search_path` statements before `offset` leave, or `None`
/// when they set none.
fn search_path_at(statements: &[Statement], offset: usize) -> Option<SearchPath> {
    statements
        .iter()
        .filter(|s| s.origin == Origin::TopLevel && s.span.end <= offset)
        .fold(None, |path, s| SearchPath::after(&s.kind).or(path))
}

/// The statement a finding is about: the innermost one of its anchor that contains its span
/// (a DML inside a DO block), else the top-level one.
fn statement_of<'s>(statements: &'s [Statement], finding: &Finding) -> Option<&'s Statement> {
    let anchor = finding.anchor.as_ref()?;
    let span = &finding.span;
    statements
        .iter()
        .filter(|s| &s.anchor == anchor && s.span.start <= span.start && span.end <= s.span.end)
        .min_by_key(|s| s.span.len())
        .or_else(|| statements.iter().find(|s| &s.span == anchor))
}

fn shape(stmt: &Statement) -> Shape {
    match &stmt.kind {
        StmtKind::CreateIndex { .. } => Shape::CreateIndex,
        StmtKind::DropIndex { .. } => Shape::DropIndex,
        StmtKind::Update { .. } | StmtKind::Merge { .. } => Shape::Update,
        StmtKind::Delete { .. } => Shape::Delete,
        StmtKind::Insert { .. } | StmtKind::SelectInto { .. } => Shape::Insert,
        StmtKind::AlterTable { actions, .. } => {
            let constraint = |a: &AlterAction| match a {
                AlterAction::AddConstraint(c) => Some(c.kind.clone()),
                _ => None,
            };
            if actions
                .iter()
                .filter_map(constraint)
                .any(|k| matches!(k, ConstraintKind::ForeignKey { .. }))
                || actions.iter().any(|a| match a {
                    AlterAction::AddColumn { column } => column
                        .constraints
                        .iter()
                        .any(|c| matches!(c.kind, ConstraintKind::ForeignKey { .. })),
                    _ => false,
                })
            {
                Shape::ForeignKey
            } else if actions.iter().filter_map(constraint).any(|k| {
                matches!(
                    k,
                    ConstraintKind::Unique { using_index: false }
                        | ConstraintKind::PrimaryKey { using_index: false }
                )
            }) {
                Shape::AddKey
            } else {
                Shape::Any
            }
        }
        StmtKind::CreateTable {
            as_query: None,
            columns,
            constraints,
            ..
        } if constraints
            .iter()
            .chain(columns.iter().flat_map(|c| c.constraints.iter()))
            .any(|c| matches!(c.kind, ConstraintKind::ForeignKey { .. })) =>
        {
            Shape::ForeignKey
        }
        _ => Shape::Any,
    }
}

/// The tables a statement names: the one it changes, the one its foreign key references, the one
/// it copies rows from.
#[derive(Default)]
struct Tables {
    target: Option<Name>,
    referenced: Option<Name>,
    source: Option<Name>,
    /// The statement touches the rows a WHERE clause (or a join) selects, not all of them.
    filtered: bool,
    /// An index the statement names (DROP INDEX, REINDEX INDEX): its table is looked up.
    index: Option<Name>,
}

fn tables(stmt: &Statement) -> Tables {
    let mut t = Tables::default();
    let foreign = |c: &sql::Constraint| match &c.kind {
        ConstraintKind::ForeignKey { references } => Some(references.clone()),
        _ => None,
    };
    match &stmt.kind {
        StmtKind::Update {
            table,
            filter,
            reads,
        }
        | StmtKind::Delete {
            table,
            filter,
            reads,
        } => {
            t.target = Some(table.clone());
            t.filtered = filter.is_some() || !reads.is_empty();
        }
        StmtKind::Merge { table, source, .. } => {
            t.target = Some(table.clone());
            t.source = source.sources.first().cloned();
            t.filtered = true;
        }
        StmtKind::Insert { table, source, .. } => {
            t.target = Some(table.clone());
            if let InsertSource::Query(q) = source {
                t.source = q.sources.first().cloned();
            }
            t.filtered = true;
        }
        StmtKind::CreateTable {
            table,
            as_query,
            columns,
            constraints,
            ..
        } => {
            t.target = Some(table.clone());
            t.source = as_query.as_ref().and_then(|q| q.sources.first().cloned());
            t.referenced = constraints
                .iter()
                .chain(columns.iter().flat_map(|c| c.constraints.iter()))
                .find_map(foreign);
        }
        StmtKind::SelectInto { table, query } => {
            t.target = Some(table.clone());
            t.source = query.sources.first().cloned();
        }
        StmtKind::CreateView { name, query, .. } => {
            t.target = Some(name.clone());
            t.source = query.sources.first().cloned();
        }
        StmtKind::Copy { table, .. } => t.target = table.clone(),
        StmtKind::AlterTable { table, actions } => {
            t.target = Some(table.clone());
            t.referenced = actions.iter().find_map(|a| match a {
                AlterAction::AddConstraint(c) => foreign(c),
                AlterAction::AddColumn { column } => column.constraints.iter().find_map(foreign),
                _ => None,
            });
        }
        StmtKind::CreateIndex { table, .. } => t.target = Some(table.clone()),
        StmtKind::DropIndex { names, .. } => t.index = names.first().cloned(),
        StmtKind::Reindex { target, .. } => match target {
            sql::ReindexTarget::Table(n) | sql::ReindexTarget::Named(n) => {
                t.target = Some(n.clone())
            }
            sql::ReindexTarget::Index(n) => t.index = Some(n.clone()),
            sql::ReindexTarget::Many(_) => {}
        },
        StmtKind::CreateTrigger { table, .. } => t.target = Some(table.clone()),
        StmtKind::DropTable { tables } | StmtKind::Truncate { tables } => {
            t.target = tables.first().cloned()
        }
        _ => {}
    }
    t
}

/// The estimate of one statement, or `None` when it names no table to estimate.
fn estimate(
    entry: &LockEntry,
    stmt: &Statement,
    sql: Option<&str>,
    catalog: &mut dyn Catalog,
) -> anyhow::Result<Option<Estimate>> {
    let mut names = tables(stmt);
    if names.target.is_none()
        && let Some(index) = &names.index
    {
        names.target = catalog.index_table(index)?;
        if names.target.is_none() {
            return Ok(Some(missing(entry, &index.to_string(), "index")));
        }
    }
    let measured = match entry.on {
        On::Source => names.source.clone().or(names.target.clone()),
        On::Target | On::TargetAndReferenced => names.target.clone(),
    };
    let Some(measured) = measured else {
        return Ok(None);
    };
    let Some(stats) = catalog.stats(&measured)? else {
        return Ok(Some(missing(entry, &measured.to_string(), "table")));
    };
    let mut locks = vec![LockOn {
        mode: entry.mode,
        table: stats.name.clone(),
    }];
    if entry.on == On::TargetAndReferenced
        && let Some(referenced) = &names.referenced
    {
        let name = match catalog.stats(referenced)? {
            Some(s) => s.name,
            None => referenced.to_string(),
        };
        locks.push(LockOn {
            mode: entry.mode,
            table: name,
        });
    }
    let (table_rows, table_rows_from) = stats.rows();
    let dml = matches!(entry.work, Work::Update | Work::Delete | Work::Copy)
        && matches!(
            stmt.kind,
            StmtKind::Update { .. }
                | StmtKind::Delete { .. }
                | StmtKind::Insert { .. }
                | StmtKind::Merge { .. }
        );
    let planned = match (dml, sql) {
        (true, Some(sql)) => catalog.planned_rows(sql)?,
        _ => None,
    };
    let (rows, rows_from) = match planned {
        Some(rows) => (rows.min(table_rows.max(rows)), "planner"),
        None if dml && names.filtered => (
            table_rows,
            "whole table (upper bound: the target could not plan the statement)",
        ),
        None => (table_rows, table_rows_from),
    };
    let figures = Figures {
        work: entry.work,
        rows,
        table_rows,
        heap_bytes: stats.heap_bytes,
        index_bytes: stats.index_bytes,
        indexes: stats.indexes,
    };
    let bytes = figures.bytes();
    let range = duration(entry.work, bytes);
    let text = describe(entry, &figures, bytes, range, &locks, rows_from);
    Ok(Some(Estimate {
        table: stats.name,
        exists: true,
        work: entry.work,
        locks,
        row_locks: entry.row_locks,
        rows: Some(rows.round()),
        rows_from: Some(rows_from),
        bytes: Some(bytes),
        table_rows: Some(table_rows.round()),
        heap_bytes: Some(stats.heap_bytes),
        index_bytes: Some(stats.index_bytes),
        indexes: Some(stats.indexes),
        seconds_low: range.map(|r| r.0),
        seconds_high: range.map(|r| r.1),
        text,
    }))
}

fn missing(entry: &LockEntry, name: &str, what: &str) -> Estimate {
    Estimate {
        table: name.to_owned(),
        exists: false,
        work: entry.work,
        locks: vec![LockOn {
            mode: entry.mode,
            table: name.to_owned(),
        }],
        row_locks: entry.row_locks,
        rows: None,
        rows_from: None,
        bytes: None,
        table_rows: None,
        heap_bytes: None,
        index_bytes: None,
        indexes: None,
        seconds_low: None,
        seconds_high: None,
        text: format!(
            "no estimate: {what} {name} does not exist on the target database (the migrations create it, or this is not the database they run on)"
        ),
    }
}

/// The catalog figures of one statement's work.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    pub work: Work,
    /// The rows the statement touches.
    pub rows: f64,
    pub table_rows: f64,
    pub heap_bytes: u64,
    pub index_bytes: u64,
    pub indexes: u64,
}

impl Figures {
    /// The bytes the work moves (see [`Work`]'s variants).
    pub fn bytes(&self) -> u64 {
        let share = if self.table_rows > 0.0 {
            (self.rows / self.table_rows).clamp(0.0, 1.0)
        } else if self.rows > 0.0 {
            1.0
        } else {
            0.0
        };
        let heap = self.heap_bytes as f64;
        let all = heap + self.index_bytes as f64;
        let bytes = match self.work {
            Work::Update | Work::Copy => all * share,
            Work::Delete => heap * share,
            Work::Rewrite => all,
            Work::Scan => heap,
            Work::IndexBuild => heap,
            Work::Catalog | Work::Fails => 0.0,
        };
        bytes.round() as u64
    }
}

/// The duration range in seconds of `work` moving `bytes`, from [`RATES`]; `None` for work that
/// has no rate (a catalog change, a statement that fails).
pub fn duration(work: Work, bytes: u64) -> Option<(f64, f64)> {
    let rate = RATES.iter().find(|r| r.work == work)?;
    let mb = bytes as f64 / 1e6;
    Some((mb / rate.high_mb_s, mb / rate.low_mb_s))
}

fn describe(
    entry: &LockEntry,
    figures: &Figures,
    bytes: u64,
    range: Option<(f64, f64)>,
    locks: &[LockOn],
    rows_from: &str,
) -> String {
    let rows = count(figures.rows);
    let held = locks
        .iter()
        .map(|l| format!("{} on {}", l.mode, l.table))
        .collect::<Vec<_>>()
        .join(" and ");
    let mut text = match (entry.work, range) {
        (Work::Fails, _) => format!("fails on a table of ~{rows} rows rather than taking time"),
        (Work::Catalog, _) => format!(
            "catalog change: done once the lock is granted; the table has ~{rows} rows ({})",
            self::bytes(figures.heap_bytes + figures.index_bytes)
        ),
        (work, Some((low, high))) => {
            let of = match work {
                Work::Update | Work::Delete | Work::Copy => format!("of ~{rows} rows"),
                _ => format!("of {}, ~{rows} rows", locks[0].table),
            };
            let holding = if entry.row_locks {
                " holding row locks"
            } else {
                ""
            };
            format!(
                "{} {of} ({}){holding} {}",
                work.what(),
                self::bytes(bytes),
                span(low, high)
            )
        }
        (work, None) => format!("{} of ~{rows} rows", work.what()),
    };
    text.push_str(&format!("; {held} for the whole time"));
    if rows_from != "table statistics" {
        text.push_str(&format!("; rows from the {rows_from}"));
    }
    text
}

/// `1.09M`, `12.3k`, `870`.
fn count(n: f64) -> String {
    if n >= 1e9 {
        format!("{:.2}G", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e4 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{}", n.round() as u64)
    }
}

/// `412 MB`, `1.2 GB`, `80 kB`.
fn bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.1} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.0} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.0} kB", n / 1e3)
    } else {
        format!("{n} B")
    }
}

/// A duration range: `~4-11 min`, `~2-9 s`, `~40 s-3 min`, `under 1 s`.
fn span(low: f64, high: f64) -> String {
    if high < 1.0 {
        return "under 1 s".into();
    }
    let unit = |x: f64| {
        if x >= 3600.0 {
            (x / 3600.0, "h")
        } else if x >= 60.0 {
            (x / 60.0, "min")
        } else {
            (x, "s")
        }
    };
    let number = |v: f64| {
        if v < 10.0 {
            let text = format!("{v:.1}");
            text.strip_suffix(".0").map_or(text.clone(), str::to_owned)
        } else {
            format!("{v:.0}")
        }
    };
    let ((l, lu), (h, hu)) = (unit(low), unit(high));
    if lu == hu {
        format!("~{}-{} {hu}", number(l), number(h))
    } else {
        format!("~{} {lu}-{} {hu}", number(l), number(h))
    }
}

#[cfg(test)]
mod tests;
