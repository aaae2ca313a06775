//! The rules, one per file. Each file has a `check` function that reads a [`FileCx`] and pushes
//! [`Finding`]s, and ends with its `err`/`ok` tests (snapshots beside it in `snapshots/`).
//!
//! Rules report with the rule's default severity, or a milder one for a milder case (a seed-row
//! fix-up); configuration and suppression comments are applied afterwards by the driver, so a rule
//! never looks at either.

use rustc_hash::FxHashMap as HashMap;
use std::cell::OnceCell;

use super::{FileCx, Finding};
use crate::lint::Severity;
use crate::sql::{Filter, Name, Origin, Query, Statement, StmtKind};

mod adding_required_column;
mod backfill_alter_column_type;
mod backfill_copy;
mod backfill_create_table_as;
mod backfill_delete;
mod backfill_do_block;
mod backfill_insert_select;
mod backfill_merge;
mod backfill_stored_generated_column;
mod backfill_table_rebuild;
mod backfill_update;
mod backfill_volatile_default;
mod concurrently_in_transaction;
mod constraint_without_not_valid;
mod contract_without_gate;
mod identifier_too_long;
mod index_not_concurrent;
mod reindex_not_concurrent;
mod require_lock_timeout;
mod set_not_null;
mod transaction_in_migration;

type Check = fn(&FileCx<'_>, &mut Vec<Finding>);

/// Every rule's check, in the order findings are produced (the driver sorts them by position).
const CHECKS: &[Check] = &[
    backfill_update::check,
    backfill_delete::check,
    backfill_merge::check,
    backfill_insert_select::check,
    backfill_create_table_as::check,
    backfill_copy::check,
    backfill_do_block::check,
    backfill_alter_column_type::check,
    backfill_volatile_default::check,
    backfill_stored_generated_column::check,
    backfill_table_rebuild::check,
    index_not_concurrent::check,
    concurrently_in_transaction::check,
    constraint_without_not_valid::check,
    set_not_null::check,
    require_lock_timeout::check,
    contract_without_gate::check,
    adding_required_column::check,
    reindex_not_concurrent::check,
    transaction_in_migration::check,
    identifier_too_long::check,
];

pub(crate) fn check_all(cx: &FileCx<'_>, out: &mut Vec<Finding>) {
    for check in CHECKS {
        check(cx, out);
    }
}

/// The help shared by the backfill rules: where the statement belongs instead.
pub(crate) const MOVE_TO_DATA_MIGRATION: &str = "move it to `data-migrations/` as a batched data migration, try it with `cargo xtask backfill sample`, and keep only the structure change here";

/// The help for a seed-row fix-up (a point-lookup WHERE): it may be fine, but someone must say so.
pub(crate) const SEED_FIXUP_HELP: &str = "if it only fixes up a few seed rows, suppress it with a reason that says how many rows match in production; otherwise move it to `data-migrations/` as a batched data migration";

/// How much of its table a filtered UPDATE/DELETE touches.
pub(crate) enum Scope {
    /// No WHERE: every row.
    All,
    /// A WHERE that can match any number of rows.
    Matching,
    /// Only `column = constant` comparisons: the shape of a seed-row fix-up. The text is the
    /// filter, when it is short enough to quote in a message.
    Point(Option<String>),
}

impl Scope {
    pub(crate) fn of(filter: Option<&Filter>) -> Scope {
        match filter {
            None => Scope::All,
            Some(f) if f.point_lookup => Scope::Point(quotable(&f.text)),
            Some(_) => Scope::Matching,
        }
    }

    /// Point lookups are still reported (a `status = 'pending'` can match millions of rows), but
    /// as warnings: most are seed-row fix-ups that a reviewer can wave through.
    pub(crate) fn severity(&self, default: Severity) -> Severity {
        match self {
            Scope::Point(_) => Severity::Warning,
            _ => default,
        }
    }

    /// "every row", "every row matching its WHERE", "only the rows matching `key = 'x'`".
    pub(crate) fn rows(&self) -> String {
        match self {
            Scope::All => "every row".into(),
            Scope::Matching => "every row matching its WHERE".into(),
            Scope::Point(Some(text)) => format!("only the rows matching `{text}`"),
            Scope::Point(None) => "only the rows matching its WHERE".into(),
        }
    }
}

/// `text` with its whitespace collapsed, when it is short enough to quote in a one-line message.
pub(crate) fn quotable(text: &str) -> Option<String> {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (!collapsed.is_empty() && collapsed.chars().count() <= 60 && !collapsed.contains('`'))
        .then_some(collapsed)
}

/// The DO statement whose body runs `stmt`, if any: statements of the body (and of strings its
/// EXECUTEs run) belong to `backfill-do-block` alone. A data-modifying CTE inside the body is
/// listed with origin `Cte` but still runs with the DO block, so its anchor decides.
pub(crate) fn enclosing_do<'a>(cx: &FileCx<'a>, stmt: &Statement) -> Option<&'a Statement> {
    if stmt.origin == Origin::TopLevel {
        return None;
    }
    // Statements are in source order and a container starts before what it contains, so a
    // binary search finds it; a linear scan covers a front end that breaks the order.
    let statements = &cx.parsed.statements;
    let is_container = |s: &Statement| s.origin == Origin::TopLevel && s.span == stmt.anchor;
    let at = statements.partition_point(|s| s.span.start < stmt.anchor.start);
    let container = statements[at..]
        .iter()
        .take_while(|s| s.span.start == stmt.anchor.start)
        .find(|s| is_container(s))
        .or_else(|| statements.iter().find(|s| is_container(s)))?;
    matches!(container.kind, StmtKind::Do { .. }).then_some(container)
}

/// Whether `stmt` runs as part of a DO block (see [`enclosing_do`]).
pub(crate) fn in_do_block(cx: &FileCx<'_>, stmt: &Statement) -> bool {
    matches!(stmt.origin, Origin::DoBlock | Origin::DoExecute) || enclosing_do(cx, stmt).is_some()
}

/// Views this file creates, so that copying the rows of one counts as copying the rows it is
/// made of: selecting from a view over existing tables copies their rows, from a view over new
/// tables (or over constants) nothing old. Set-returning functions this file creates likewise:
/// `SELECT * FROM f()` copies the rows of what `f`'s body selects from.
pub(crate) struct FileViews<'a> {
    views: HashMap<&'a str, Vec<ViewDef<'a>>>,
    /// Set-returning functions, by name.
    functions: HashMap<&'a str, Vec<FunctionDef<'a>>>,
}

/// Where a set-returning function is created, its name, and the sources of the queries its body
/// runs (what it returns rows of).
type FunctionDef<'a> = (usize, &'a Name, Vec<&'a [Name]>);

/// Where a view is created, its name, and the tables its rows come from ([`Query::sources`]).
///
/// [`Query::sources`]: crate::sql::Query::sources
type ViewDef<'a> = (usize, &'a Name, &'a [Name]);

/// An existing table a query copies rows of, and the view or function of this file it reads
/// them through, if any.
pub(crate) struct Read<'a> {
    pub table: &'a Name,
    pub via: Option<Via<'a>>,
}

/// What a query reads an existing table through.
#[derive(Clone, Copy)]
pub(crate) enum Via<'a> {
    View(&'a Name),
    Function(&'a Name),
}

impl Read<'_> {
    /// "`users`, an existing table," or "`users`, an existing table read through the view `v`,".
    pub(crate) fn phrase(&self) -> String {
        match self.via {
            None => format!("`{}`, an existing table,", self.table),
            Some(Via::View(view)) => format!(
                "`{}`, an existing table read through the view `{view}`,",
                self.table
            ),
            Some(Via::Function(function)) => format!(
                "`{}`, an existing table read through the function `{function}`,",
                self.table
            ),
        }
    }
}

/// How many views one lookup may expand: views of views are rare, and a hostile file must not
/// make each statement walk a huge graph. Past it the view itself counts as the existing read.
const VIEW_BUDGET: usize = 64;

impl<'a> FileViews<'a> {
    pub(crate) fn new(cx: &FileCx<'a>) -> Self {
        let mut views: HashMap<&str, Vec<_>> = HashMap::default();
        let mut functions: HashMap<&str, Vec<_>> = HashMap::default();
        for (index, stmt) in cx.parsed.statements.iter().enumerate() {
            match &stmt.kind {
                StmtKind::CreateView { name, query, .. } => views
                    .entry(name.name.as_str())
                    .or_default()
                    .push((index, name, query.sources.as_slice())),
                StmtKind::CreateFunction {
                    name,
                    body,
                    returns_set: true,
                    ..
                } => {
                    let sources = body
                        .iter()
                        .filter_map(|s| match &s.kind {
                            StmtKind::Select { query } => Some(query.sources.as_slice()),
                            _ => None,
                        })
                        .collect();
                    functions
                        .entry(name.name.as_str())
                        .or_default()
                        .push((index, name, sources));
                }
                _ => {}
            }
        }
        FileViews { views, functions }
    }

    /// Where the rows of `query` come from, if from a table that existed before the migration
    /// (and is not configured small), at statement `index`: one of its [`Query::sources`],
    /// directly or as a source of views this file created before it, or what a set-returning
    /// function this file created before it selects from, when the query's rows are that
    /// function's ([`Query::row_functions`]).
    pub(crate) fn first_existing_rows(
        &self,
        cx: &FileCx<'_>,
        index: usize,
        query: &'a Query,
    ) -> Option<Read<'a>> {
        let mut budget = VIEW_BUDGET;
        if let Some(read) = self.find(cx, index, &query.sources, None, &mut budget) {
            return Some(read);
        }
        for call in &query.row_functions {
            let Some((_, name, bodies)) = self
                .functions
                .get(call.as_str())
                .and_then(|defs| defs.iter().rev().find(|(at, _, _)| *at < index))
            else {
                continue;
            };
            for sources in bodies {
                if let Some(read) =
                    self.find(cx, index, sources, Some(Via::Function(name)), &mut budget)
                {
                    return Some(read);
                }
            }
        }
        None
    }

    fn find(
        &self,
        cx: &FileCx<'_>,
        index: usize,
        reads: &'a [Name],
        via: Option<Via<'a>>,
        budget: &mut usize,
    ) -> Option<Read<'a>> {
        for read in reads {
            let view = self.views.get(read.name.as_str()).and_then(|defs| {
                defs.iter()
                    .rev()
                    .find(|(at, name, _)| *at < index && name.same_object(read))
            });
            match view {
                Some(&(_, name, view_reads)) if *budget > 0 => {
                    *budget -= 1;
                    if let Some(found) =
                        self.find(cx, index, view_reads, via.or(Some(Via::View(name))), budget)
                    {
                        return Some(found);
                    }
                }
                // Out of budget: assume the worst of the view.
                Some(_) => return Some(Read { table: read, via }),
                None if cx.is_existing_large_table(index, read) => {
                    return Some(Read { table: read, via });
                }
                None => {}
            }
        }
        None
    }
}

/// Indexes and materialized views a file has created so far, for rules that walk it forward
/// (`FileCx::is_new_table` knows only tables). Dropping such an index again undoes the file's own
/// work, and indexing a view nobody can have used yet blocks nobody.
#[derive(Default)]
pub(crate) struct CreatedHere<'a> {
    indexes: HashMap<&'a str, Vec<&'a Name>>,
    views: HashMap<&'a str, Vec<&'a Name>>,
}

impl<'a> CreatedHere<'a> {
    /// Records what `stmt` creates; call it after judging `stmt`.
    pub(crate) fn record(&mut self, stmt: &'a Statement) {
        match &stmt.kind {
            StmtKind::CreateIndex {
                name: Some(name), ..
            } => self.indexes.entry(&name.name).or_default().push(name),
            StmtKind::CreateView {
                name,
                materialized: true,
                ..
            } => self.views.entry(&name.name).or_default().push(name),
            _ => {}
        }
    }

    pub(crate) fn has_index(&self, name: &Name) -> bool {
        Self::has(&self.indexes, name)
    }

    pub(crate) fn has_view(&self, name: &Name) -> bool {
        Self::has(&self.views, name)
    }

    fn has(map: &HashMap<&str, Vec<&Name>>, name: &Name) -> bool {
        map.get(name.name.as_str())
            .is_some_and(|names| names.iter().any(|n| n.same_object(name)))
    }
}

/// The note for a statement found in a `WITH` clause of another one.
pub(crate) fn cte_note(verb: &str, lines: &LineIndex<'_>, stmt: &Statement) -> String {
    format!(
        "the {verb} is in a WITH clause of the statement at line {}",
        lines.line_of(stmt.anchor.start)
    )
}

/// Line numbers for notes, built on first use. `FileCx::line_of` counts from the start of the
/// file on every call, which is quadratic for a file with many findings that mention a line.
pub(crate) struct LineIndex<'t> {
    text: &'t str,
    starts: OnceCell<Vec<usize>>,
}

impl<'t> LineIndex<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        LineIndex {
            text,
            starts: OnceCell::new(),
        }
    }

    /// 1-based line of a byte offset (clamped to the text), as `FileCx::line_of` counts.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        let starts = self.starts.get_or_init(|| {
            std::iter::once(0)
                .chain(self.text.match_indices('\n').map(|(i, _)| i + 1))
                .collect()
        });
        starts.partition_point(|&start| start <= offset.min(self.text.len()))
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Helpers for rule tests. Each failure message points to the other helper.

    use std::path::Path;

    use crate::lint::{LintOptions, RuleId, lint_text};
    use crate::sql::Dialect;

    /// Lints `sql` and renders the findings of `rule` as plain text (for snapshots).
    fn render(sql: &str, dialect: Dialect, rule: RuleId) -> Vec<String> {
        let options = LintOptions {
            dialect,
            ..LintOptions::default()
        };
        lint_text(Path::new("test.sql"), sql, &options)
            .into_iter()
            .filter(|f| f.rule == rule)
            .map(|f| {
                // The severity is shown only where a rule chose a milder one than its default, so
                // the common case stays short.
                let severity = if f.severity == rule.default_severity() {
                    String::new()
                } else {
                    format!(" ({})", f.severity.as_str())
                };
                let mut s = format!(
                    "{}{severity}: {} [{:?}]\n  help: {}",
                    f.rule,
                    f.message,
                    &sql[f.span.clone()],
                    f.help
                );
                if let Some(note) = f.note {
                    s.push_str(&format!("\n  note: {note}"));
                }
                s
            })
            .collect()
    }

    /// The findings of `rule` in the last of `files`, linted in order as migrations (each sees
    /// the schema the ones before it built), as [`lint_errors`] renders them; may be empty.
    pub fn lint_last(files: &[&str], dialect: Dialect, rule: RuleId) -> Vec<String> {
        let options = LintOptions {
            dialect,
            ..LintOptions::default()
        };
        let mut schema = crate::lint::Schema::default();
        let mut found = Vec::new();
        for (i, sql) in files.iter().enumerate() {
            let parsed = crate::lint::parse_guarded(sql, dialect);
            let path = format!("V{}__m.sql", i + 1);
            found = crate::lint::lint_parsed(
                Path::new(&path),
                sql,
                &parsed,
                &mut schema,
                &options,
                true,
            )
            .into_iter()
            .filter(|f| f.rule == rule)
            .map(|f| format!("{}: {}", f.rule, f.message))
            .collect();
        }
        found
    }

    /// The findings of `rule` in each of `files`, linted together as the migrations
    /// `migrations/V1__m.sql`, `V2__m.sql`, ... of one directory (each file sees the schema the
    /// ones before built, and its neighbours), as `rule: message` with the note; may be empty.
    pub fn lint_dir(files: &[&str], dialect: Dialect, rule: RuleId) -> Vec<Vec<String>> {
        let options = LintOptions {
            dialect,
            ..LintOptions::default()
        };
        let paths: Vec<std::path::PathBuf> = (1..=files.len())
            .map(|i| format!("migrations/V{i}__m.sql").into())
            .collect();
        let contents = paths
            .iter()
            .zip(files)
            .map(|(p, sql)| (p.clone(), sql.as_bytes().to_vec()))
            .collect();
        let report = crate::lint::lint_files(paths, &contents, &options, &mut Default::default())
            .expect("lints");
        report
            .files
            .into_iter()
            .map(|file| {
                file.findings
                    .into_iter()
                    .filter(|f| f.rule == rule)
                    .map(|f| match f.note {
                        Some(note) => format!("{}: {}\n  note: {note}", f.rule, f.message),
                        None => format!("{}: {}", f.rule, f.message),
                    })
                    .collect()
            })
            .collect()
    }

    /// The findings of `rule` for `sql` in a file at `path`, as messages; may be empty.
    pub fn lint_at(path: &str, sql: &str, dialect: Dialect, rule: RuleId) -> Vec<String> {
        let options = LintOptions {
            dialect,
            ..LintOptions::default()
        };
        lint_text(Path::new(path), sql, &options)
            .into_iter()
            .filter(|f| f.rule == rule)
            .map(|f| f.message)
            .collect()
    }

    /// The findings of `rule` for `sql`; fails when there are none.
    #[track_caller]
    pub fn lint_errors(sql: &str, dialect: Dialect, rule: RuleId) -> Vec<String> {
        let found = render(sql, dialect, rule);
        assert!(
            !found.is_empty(),
            "expected `{rule}` findings in:\n{sql}\nuse `lint_ok` to assert there are none"
        );
        found
    }

    /// Asserts that `sql` has no finding of `rule`.
    #[track_caller]
    pub fn lint_ok(sql: &str, dialect: Dialect, rule: RuleId) {
        let found = render(sql, dialect, rule);
        assert!(
            found.is_empty(),
            "expected no `{rule}` findings in:\n{sql}\nfound:\n{}\nuse `lint_errors` to assert there are some",
            found.join("\n")
        );
    }
}
