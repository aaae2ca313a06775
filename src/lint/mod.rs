//! `migrate lint`: finds backfills and long locks hidden in schema migrations.
//!
//! The pipeline for a set of files: read each file (bytes; a file that is not UTF-8 is a
//! finding), parse it with the dialect's front end (in parallel, on threads with a large stack so
//! pathological nesting cannot overflow), then walk the files in migration order so facts carry
//! from one file to the next (a column's type, declared in an earlier migration, tells whether a
//! later type change rewrites the table). Rules see one file at a time through a [`FileCx`].
//! Suppression comments and configured severities are applied last, so every rule stays simple.

pub mod canonical;
pub mod estimate;
pub mod explain;
pub mod fix;
pub mod layout;
pub mod naming;
pub mod output;
pub mod rule_id;
pub mod rules;
mod schema;
mod suppress;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use rule_id::{Category, Level, RuleId, Severity};
pub use schema::{Schema, SearchPath};
pub(crate) use suppress::suggest as suggest_rule;

use crate::sql::{self, Dialect, Name, ParsedFile, Span, Statement, StmtKind, TransactionControl};

/// One problem in one file.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub rule: RuleId,
    pub severity: Severity,
    /// What the finding points at. Empty (`0..0`) for a finding about the whole file.
    pub span: Span,
    /// The top-level statement the finding belongs to; suppression comments attach to it.
    /// `None` for findings about the file itself.
    pub anchor: Option<Span>,
    /// What the statement does to the running database. One sentence, no trailing period.
    pub message: String,
    /// What to do instead. One sentence, no trailing period.
    pub help: String,
    /// Optional extra context ("the UPDATE is inside the DO block at line 4").
    pub note: Option<String>,
    /// What the statement costs on a target database (`migrate lint --estimate`).
    pub estimate: Option<Box<estimate::Estimate>>,
}

impl Finding {
    /// A finding about `stmt`, with the rule's default severity.
    pub fn at(
        rule: RuleId,
        stmt: &Statement,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> Self {
        Finding {
            rule,
            severity: rule.default_severity(),
            span: stmt.span.clone(),
            anchor: Some(stmt.anchor.clone()),
            message: message.into(),
            help: help.into(),
            note: None,
            estimate: None,
        }
    }

    /// A finding about the whole file.
    pub fn file(rule: RuleId, message: impl Into<String>, help: impl Into<String>) -> Self {
        Finding {
            rule,
            severity: rule.default_severity(),
            span: 0..0,
            anchor: None,
            message: message.into(),
            help: help.into(),
            note: None,
            estimate: None,
        }
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    pub fn with_span(mut self, span: Span) -> Self {
        self.span = span;
        self
    }
}

/// Settings that shape what the rules report. Built from `[workspace.metadata.xtask-migrate]`
/// and command-line flags (see [`crate::config`]).
#[derive(Debug, Clone)]
pub struct LintOptions {
    pub dialect: Dialect,
    /// Per-rule severity overrides; rules not listed keep their default.
    pub levels: HashMap<RuleId, Level>,
    /// Tables known to stay small in every environment: a backfill of one of these is allowed.
    pub small_tables: Vec<Name>,
    /// Migrations with a refinery version at or below this have run everywhere and are not
    /// reported on (they are still read, so later files know the schema they built).
    pub baseline: Option<u64>,
    /// Whether the migration runner wraps each file in a transaction (refinery 0.10 always does).
    pub runner_wraps_in_transaction: bool,
    /// The directory whose files follow refinery's naming; naming rules apply to files under it.
    pub migrations_dir: Option<PathBuf>,
    /// The workspace's data migrations, for `contract-without-gate`.
    pub backfills: Vec<BackfillFacts>,
    /// The migrations directory's layout: which files are migrations, their versions and order.
    pub layout: crate::config::MigrationLayout,
}

/// What a data migration of the workspace fills and reads, read from its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillFacts {
    /// `V1__backfill_counter_caches`.
    pub id: String,
    pub version: u64,
    /// The schema version it needs (`@requires`).
    pub requires: u64,
    /// Its table (unqualified, lower case).
    pub table: String,
    /// The columns its batch statement assigns.
    pub writes: Vec<String>,
    /// The other tables its batch statement reads.
    pub reads: Vec<String>,
}

impl BackfillFacts {
    /// Whether `name` (as a gate names it: the id, or `V{version}`) designates this one.
    pub fn is_named(&self, name: &str) -> bool {
        name == self.id
            || name.strip_prefix(['V', 'v']).and_then(|v| v.parse().ok()) == Some(self.version)
    }

    /// The facts of every data migration in `dir` that parses (the others are reported by the
    /// data-migration checks).
    pub fn read_dir(dir: &Path) -> Vec<BackfillFacts> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "sql") {
                continue;
            }
            let Ok(m) = crate::backfill::migration::load_file(&path) else {
                continue;
            };
            let sql = m.batch.sql(Dialect::Postgres);
            let (writes, reads) = batch_columns_and_reads(sql);
            out.push(BackfillFacts {
                id: m.id(),
                version: m.version,
                requires: m.requires.value,
                table: m.table.value.to_lowercase(),
                writes,
                reads: reads
                    .into_iter()
                    .filter(|r| *r != m.table.value.to_lowercase())
                    .collect(),
            });
        }
        out.sort_by_key(|b| b.version);
        out
    }
}

/// The columns an UPDATE batch statement assigns (sqlparser's AST), and the tables it reads
/// (the linter's own view of the statement).
fn batch_columns_and_reads(sql: &str) -> (Vec<String>, Vec<String>) {
    use sqlparser::ast::{AssignmentTarget, Statement as Ast};
    let mut writes = Vec::new();
    if let Ok(statements) =
        sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::PostgreSqlDialect {}, sql)
    {
        for statement in statements {
            if let Ast::Update(update) = statement {
                for assignment in &update.assignments {
                    let names = match &assignment.target {
                        AssignmentTarget::ColumnName(name) => vec![name.clone()],
                        AssignmentTarget::Tuple(names) => names.clone(),
                    };
                    for name in names {
                        if let Some(last) = name.0.last().and_then(|p| p.as_ident()) {
                            writes.push(last.value.to_lowercase());
                        }
                    }
                }
            }
        }
    }
    let mut reads = Vec::new();
    for stmt in crate::sql::parse(sql, Dialect::Postgres).statements {
        if let crate::sql::StmtKind::Update { reads: r, .. } = &stmt.kind {
            reads.extend(r.iter().map(|n| n.name.to_lowercase()));
        }
    }
    reads.sort();
    reads.dedup();
    (writes, reads)
}

impl Default for LintOptions {
    fn default() -> Self {
        LintOptions {
            dialect: Dialect::Postgres,
            levels: HashMap::new(),
            small_tables: Vec::new(),
            baseline: None,
            runner_wraps_in_transaction: true,
            migrations_dir: None,
            backfills: Vec::new(),
            layout: crate::config::MigrationLayout::Refinery,
        }
    }
}

impl LintOptions {
    pub fn severity(&self, rule: RuleId) -> Option<Severity> {
        match self.levels.get(&rule) {
            Some(level) => level.severity(),
            None => Some(rule.default_severity()),
        }
    }

    pub fn is_small_table(&self, table: &Name) -> bool {
        self.small_tables
            .iter()
            .any(|small| small.same_object(table))
    }
}

/// Facts about the file at the point where a statement runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StmtFacts {
    /// Inside `BEGIN ... COMMIT` written in the file, or in a file the runner wraps in a
    /// transaction.
    pub in_transaction: bool,
    /// Only inside a `BEGIN ... COMMIT` written in the file.
    pub in_explicit_transaction: bool,
    /// Which transaction the statement runs in, when it runs in one: two statements with the same
    /// number run in the same transaction (the runner's, or one `BEGIN ... COMMIT` of the file),
    /// so a lock the first takes is still held when the second runs.
    pub transaction: Option<usize>,
    /// A `SET [LOCAL] lock_timeout` (to anything but 0) ran earlier in the file.
    pub lock_timeout_set: bool,
    /// The search path the statement's unqualified names resolve through (an index into the
    /// file's paths, see [`FileCx::search_path`]).
    pub search_path: usize,
}

/// Why the runner runs a file outside a transaction of its own, if it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutsideTransaction {
    /// `-- migrate: no-transaction`: `migrate run` runs it statement by statement.
    Marker,
    /// The configured layout's tool runs it outside one (sqlx's `-- no-transaction` first line,
    /// diesel's `run_in_transaction = false`).
    Layout,
    /// A runner's naming convention: ory/popx runs `*.autocommit.up.sql` (and `.down.sql`)
    /// without a transaction.
    FileName(&'static str),
}

/// Whether a runner's naming convention says `path` runs outside a transaction.
pub fn outside_transaction_by_name(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_str()?;
    name.contains(".autocommit.")
        .then_some("`*.autocommit.*.sql` (popx, the runner of ory's projects)")
}

/// How many migrations of the same directory on each side of a file its rules may read: a
/// pattern split one statement per migration (a table rebuild) spans a few neighbouring files.
pub const NEIGHBOURS: usize = 8;

/// Another migration of the linted file's directory, near it in migration order.
#[derive(Debug, Clone, Copy)]
pub struct Neighbour<'a> {
    pub path: &'a Path,
    pub text: &'a str,
    pub parsed: &'a ParsedFile,
}

/// What a rule sees: one parsed file, facts per statement, and what earlier files built.
pub struct FileCx<'a> {
    pub path: &'a Path,
    pub text: &'a str,
    pub dialect: Dialect,
    pub parsed: &'a ParsedFile,
    /// Parallel to `parsed.statements`.
    pub facts: Vec<StmtFacts>,
    /// The schema built by the files linted before this one.
    pub schema: &'a Schema,
    pub options: &'a LintOptions,
    /// Up to [`NEIGHBOURS`] migrations of the same directory that run just before this one, in
    /// migration order (empty when the file is linted on its own).
    pub before: &'a [Neighbour<'a>],
    /// Up to [`NEIGHBOURS`] migrations of the same directory that run just after this one.
    pub after: &'a [Neighbour<'a>],
    /// For each table name created in this file: its schema, the index of the statement that
    /// created it and the index of the one that dropped it (or `usize::MAX`).
    created: rustc_hash::FxHashMap<String, Vec<(String, usize, usize)>>,
    /// Tables that existed before the file and that a statement of the file dropped: name ->
    /// (schema, the statement).
    dropped_existing: rustc_hash::FxHashMap<String, Vec<(String, usize)>>,
    /// The search paths of the file, in order (the default first); `StmtFacts::search_path`
    /// indexes it.
    search_paths: Vec<SearchPath>,
    /// The `-- migrate:` directives of the file's header (malformed ones count as none here:
    /// `migrate run` reports them).
    pub markers: crate::markers::Markers,
    /// Whether the runner runs this file outside a transaction of its own, and why.
    pub outside_transaction: Option<OutsideTransaction>,
}

/// The directives of the line comments before the file's first statement, from the comments the
/// parser already found (no second pass over the text).
fn header_markers(text: &str, parsed: &ParsedFile) -> crate::markers::Markers {
    let first = parsed
        .statements
        .iter()
        .map(|s| s.span.start)
        .chain(parsed.syntax_errors.iter().map(|e| e.span.start))
        .min()
        .unwrap_or(text.len());
    // Only a comment that reads as a directive matters; its line is counted from the previous
    // one's, so a long header costs one pass over the text.
    let (mut line, mut counted) = (1, 0);
    let header = parsed
        .comments
        .iter()
        .filter(|c| {
            c.span.start < first
                && text[c.span.start..].starts_with("--")
                && c.text.trim_start().starts_with(crate::markers::PREFIX)
        })
        .map(|c| {
            line += text[counted..c.span.start].matches('\n').count();
            counted = c.span.start;
            (c.text.clone(), line)
        });
    crate::markers::from_comments(header).unwrap_or_default()
}

impl<'a> FileCx<'a> {
    pub fn new(
        path: &'a Path,
        text: &'a str,
        parsed: &'a ParsedFile,
        schema: &'a Schema,
        options: &'a LintOptions,
    ) -> Self {
        let mut markers = header_markers(text, parsed);
        let outside_transaction = if markers.no_transaction.is_some() {
            Some(OutsideTransaction::Marker)
        } else if layout::runs_outside_transaction(options.layout, path, text) {
            // The layout's tool says so: the file counts as marked.
            markers.no_transaction = Some(1);
            Some(OutsideTransaction::Layout)
        } else {
            outside_transaction_by_name(path).map(OutsideTransaction::FileName)
        };
        let mut cx = FileCx {
            path,
            text,
            dialect: options.dialect,
            parsed,
            facts: Vec::with_capacity(parsed.statements.len()),
            schema,
            options,
            before: &[],
            after: &[],
            created: Default::default(),
            dropped_existing: Default::default(),
            search_paths: vec![SearchPath::of(options.dialect)],
            markers,
            outside_transaction,
        };
        cx.compute_facts();
        cx
    }

    /// Whether the runner wraps this file in a transaction of its own (it does unless it does
    /// not wrap any, or the file is marked or named to run outside one).
    pub fn runner_transaction(&self) -> bool {
        self.options.runner_wraps_in_transaction && self.outside_transaction.is_none()
    }

    fn compute_facts(&mut self) {
        let wrapped = self.runner_transaction();
        let mut explicit = false;
        let mut segment = 0;
        let mut lock_timeout = false;
        let mut path = 0;
        for (index, stmt) in self.parsed.statements.iter().enumerate() {
            self.facts.push(StmtFacts {
                in_transaction: explicit || wrapped,
                in_explicit_transaction: explicit,
                transaction: (explicit || wrapped).then_some(segment),
                lock_timeout_set: lock_timeout,
                search_path: path,
            });
            if let Some(next) = SearchPath::after(&stmt.kind) {
                if self.search_paths[path] != next {
                    self.search_paths.push(next);
                    path = self.search_paths.len() - 1;
                }
                continue;
            }
            match &stmt.kind {
                StmtKind::Transaction(TransactionControl::Begin) => {
                    // A BEGIN inside the runner's transaction only warns: it is still the one.
                    if !wrapped && !explicit {
                        segment += 1;
                    }
                    explicit = true;
                }
                StmtKind::Transaction(_) => {
                    explicit = false;
                    segment += 1;
                }
                StmtKind::Set { name, value, .. } if name == "lock_timeout" => {
                    let v = value.trim();
                    lock_timeout = !(v == "0" || v.eq_ignore_ascii_case("default"));
                }
                StmtKind::CreateTable {
                    table,
                    temporary,
                    if_not_exists,
                    ..
                } => {
                    let schema = self.creation_schema(index, table, *temporary);
                    // `IF NOT EXISTS` on a table that is already there does nothing: it is not
                    // new, and what comes next happens to the existing one.
                    if *if_not_exists
                        && (self.live_created(&schema, &table.name, index)
                            || self.existed_before(&schema, &table.name, index))
                    {
                        continue;
                    }
                    self.mark_created(schema, &table.name, index)
                }
                StmtKind::SelectInto { table, .. } => {
                    let schema = self.creation_schema(index, table, false);
                    self.mark_created(schema, &table.name, index)
                }
                StmtKind::DropTable { tables } => {
                    for table in tables {
                        self.mark_dropped(table, index);
                    }
                }
                StmtKind::AlterTable { table, actions } => {
                    for action in actions {
                        if let sql::AlterAction::RenameTable { new_name } = action
                            && self.is_new_table(index, table)
                        {
                            let schema = self.qualify(index, table).schema.unwrap_or_default();
                            let schema = new_name.schema.clone().unwrap_or(schema);
                            self.mark_dropped(table, index);
                            self.mark_created(schema, &new_name.name, index);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// The search path statement `index` resolves unqualified names through.
    pub fn search_path(&self, index: usize) -> &SearchPath {
        let at = self.facts.get(index).map_or(0, |f| f.search_path);
        &self.search_paths[at]
    }

    /// The schema `CREATE TABLE table` at statement `index` creates the table in.
    fn creation_schema(&self, index: usize, table: &Name, temporary: bool) -> String {
        match &table.schema {
            Some(schema) => schema.clone(),
            None if temporary => self.search_path(index).temp_schema().to_owned(),
            None => self.search_path(index).creation_schema().to_owned(),
        }
    }

    fn mark_created(&mut self, schema: String, name: &str, index: usize) {
        self.created
            .entry(name.to_owned())
            .or_default()
            .push((schema, index, usize::MAX));
    }

    fn mark_dropped(&mut self, table: &Name, index: usize) {
        let Some(schema) = self.resolve(index, table).map(str::to_owned) else {
            return;
        };
        let mut closed = false;
        if let Some(entries) = self.created.get_mut(&table.name) {
            for entry in entries.iter_mut() {
                if entry.2 == usize::MAX && entry.0 == schema {
                    entry.2 = index;
                    closed = true;
                }
            }
        }
        if !closed {
            self.dropped_existing
                .entry(table.name.clone())
                .or_default()
                .push((schema, index));
        }
    }

    /// Whether a table `schema.name` created by this file is there just before statement
    /// `index`.
    fn live_created(&self, schema: &str, name: &str, index: usize) -> bool {
        self.created.get(name).is_some_and(|entries| {
            entries
                .iter()
                .any(|(s, from, to)| s == schema && *from < index && index <= *to)
        })
    }

    /// Whether `schema.name` existed before this file and no statement before `index` dropped
    /// it.
    fn existed_before(&self, schema: &str, name: &str, index: usize) -> bool {
        self.schema.has_table(schema, name)
            && self.dropped_existing.get(name).is_none_or(|drops| {
                !drops
                    .iter()
                    .any(|(s, dropped)| s == schema && *dropped < index)
            })
    }

    /// The schema that `table`, named by statement `index`, is in, when it is known: its own, or
    /// the first schema of the search path where this file created it or an earlier migration
    /// did. `None` for an unqualified name found nowhere (a table that existed before the
    /// migrations this linter read).
    fn resolve<'s>(&'s self, index: usize, table: &'s Name) -> Option<&'s str> {
        if let Some(schema) = &table.schema {
            return Some(schema);
        }
        self.search_path(index).lookup().find(|schema| {
            self.live_created(schema, &table.name, index)
                || self.existed_before(schema, &table.name, index)
        })
    }

    /// `table` as statement `index` names it, with its schema: resolved through the search
    /// path, or (found nowhere) the schema the path creates in.
    pub fn qualify(&self, index: usize, table: &Name) -> Name {
        let schema = self
            .resolve(index, table)
            .unwrap_or_else(|| self.search_path(index).creation_schema());
        Name::qualified(schema, table.name.clone())
    }

    /// Whether `table` was created by a statement before statement `index` in this file (and not
    /// dropped since): such a table is new, so writing to it is not a backfill. Names resolve as
    /// PostgreSQL resolves them: `app.users` is not `users` unless the search path finds `users`
    /// in `app` first.
    pub fn is_new_table(&self, index: usize, table: &Name) -> bool {
        self.resolve(index, table)
            .is_some_and(|schema| self.live_created(schema, &table.name, index))
    }

    /// Whether `table` existed before this migration (it was not created earlier in this file)
    /// and is not configured as small: the tables a backfill rule cares about.
    pub fn is_existing_large_table(&self, index: usize, table: &Name) -> bool {
        !self.is_new_table(index, table) && !self.options.is_small_table(table)
    }

    /// Whether `stmt` lies in text the parser had to recover in: rules report nothing there.
    pub fn is_recovered(&self, stmt: &Statement) -> bool {
        self.parsed.is_recovered(&stmt.anchor)
    }

    /// Statements with their index and facts.
    pub fn statements(&self) -> impl Iterator<Item = (usize, &'a Statement, &StmtFacts)> + '_ {
        self.parsed
            .statements
            .iter()
            .enumerate()
            .map(move |(i, s)| (i, s, &self.facts[i]))
    }

    /// 1-based line of a byte offset (for notes that mention another line).
    pub fn line_of(&self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        self.text.as_bytes()[..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }
}

/// A file that was linted, with what was found in it.
#[derive(Debug, Clone)]
pub struct FileReport {
    /// The path as given or as found under a given directory (what outputs print).
    pub path: PathBuf,
    /// The file's text (lossy when it is not UTF-8), for renderers that quote source lines.
    pub text: String,
    pub findings: Vec<Finding>,
}

/// The result of linting a set of files.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub files: Vec<FileReport>,
}

impl Report {
    pub fn has_errors(&self) -> bool {
        self.findings().any(|(_, f)| f.severity == Severity::Error)
    }

    pub fn findings(&self) -> impl Iterator<Item = (&FileReport, &Finding)> {
        self.files
            .iter()
            .flat_map(|file| file.findings.iter().map(move |f| (file, f)))
    }
}

/// Lints one file's text on its own (no earlier files): what the rule tests use.
pub fn lint_text(path: &Path, text: &str, options: &LintOptions) -> Vec<Finding> {
    let parsed = parse_guarded(text, options.dialect);
    let mut schema = Schema::default();
    lint_parsed(path, text, &parsed, &mut schema, options, true)
}

/// Lints one parsed file: runs every rule, updates `schema` with what the file builds, applies
/// suppression comments and configured severities. `report` is false for files at or below the
/// baseline: they are read for the schema only.
pub fn lint_parsed(
    path: &Path,
    text: &str,
    parsed: &ParsedFile,
    schema: &mut Schema,
    options: &LintOptions,
    report: bool,
) -> Vec<Finding> {
    lint_among(path, text, parsed, schema, options, report, (&[], &[]))
}

/// [`lint_parsed`] for a file among the migrations of its directory: `neighbours` are those that
/// run just before it and just after it (see [`FileCx::before`]).
fn lint_among(
    path: &Path,
    text: &str,
    parsed: &ParsedFile,
    schema: &mut Schema,
    options: &LintOptions,
    report: bool,
    neighbours: (&[Neighbour<'_>], &[Neighbour<'_>]),
) -> Vec<Finding> {
    let mut findings = Vec::new();
    if report {
        let mut cx = FileCx::new(path, text, parsed, schema, options);
        (cx.before, cx.after) = neighbours;
        for issue in &parsed.syntax_errors {
            findings.push(Finding {
                rule: RuleId::SyntaxError,
                severity: RuleId::SyntaxError.default_severity(),
                span: issue.span.clone(),
                anchor: Some(issue.span.clone()),
                message: issue.message.clone(),
                help: "fix the statement so that the database would accept it; the rest of the file was still linted".into(),
                note: None,
                estimate: None,
            });
        }
        rules::check_all(&cx, &mut findings);
        // What the parser listed in text it recovered in is a guess: only the syntax finding
        // speaks for it.
        if !parsed.recovered.is_empty() {
            findings.retain(|f| {
                f.rule == RuleId::SyntaxError
                    || f.anchor.as_ref().is_none_or(|a| !parsed.is_recovered(a))
            });
        }
        findings = suppress::apply(parsed, findings);
        apply_levels(&mut findings, options);
        findings.sort_by_key(|f| (f.span.start, f.rule));
    }
    schema.apply(parsed, options.dialect);
    findings
}

/// A configured level replaces whatever the rule chose (`off` drops the finding); otherwise the
/// rule's choice stands (a rule may report a milder case as a warning).
fn apply_levels(findings: &mut Vec<Finding>, options: &LintOptions) {
    findings.retain_mut(|f| match options.levels.get(&f.rule) {
        Some(level) => match level.severity() {
            Some(severity) => {
                f.severity = severity;
                true
            }
            None => false,
        },
        None => true,
    });
}

/// Parses on a thread with a large stack: recursive-descent parsers and tree destructors recurse
/// once per nesting level, and a migration with 10,000 nested parentheses must be a finding, not
/// a crash.
pub fn parse_guarded(text: &str, dialect: Dialect) -> ParsedFile {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .stack_size(PARSE_STACK)
            .spawn_scoped(scope, || sql::parse(text, dialect))
            .expect("spawn parser thread")
            .join()
            .unwrap_or_else(|_| parser_failed())
    })
}

/// What a file whose parse panicked yields: one syntax finding, so the run goes on and the file
/// is not silently skipped.
fn parser_failed() -> ParsedFile {
    ParsedFile {
        syntax_errors: vec![sql::SyntaxIssue {
            span: 0..0,
            message: "the parser failed on this file (please report it); nothing in it was linted"
                .into(),
        }],
        ..ParsedFile::default()
    }
}

const PARSE_STACK: usize = 512 * 1024 * 1024;

/// Lints files and directories: a directory contributes every `*.sql` file under it. Files are
/// linted in migration order (refinery version, then path), so each sees the schema the ones
/// before it built. Only I/O problems are errors (a path that does not exist or cannot be read);
/// everything about a file's content is a finding.
pub fn lint_paths(inputs: &[PathBuf], options: &LintOptions) -> anyhow::Result<Report> {
    lint_paths_with(inputs, options, &mut canonical::CanonicalPaths::default())
}

/// [`lint_paths`], with what the command already knows of the paths (see
/// [`canonical::CanonicalPaths`]).
pub fn lint_paths_with(
    inputs: &[PathBuf],
    options: &LintOptions,
    paths: &mut canonical::CanonicalPaths,
) -> anyhow::Result<Report> {
    let files = collect_files(inputs, options.layout, paths)?;
    lint_files(files, &HashMap::new(), options, paths)
}

/// Lints what a commit would contain: `staged` maps files (as found under `inputs`, or added by
/// the commit) to their staged content. Only those files are reported on; the other files under
/// `inputs` are read as they are, for the schema they build, as earlier migrations would have.
pub fn lint_staged(
    inputs: &[PathBuf],
    staged: HashMap<PathBuf, Vec<u8>>,
    options: &LintOptions,
) -> anyhow::Result<Report> {
    let mut paths = canonical::CanonicalPaths::default();
    let mut files = collect_files(inputs, options.layout, &mut paths)?;
    for path in staged.keys() {
        if !files.contains(path) {
            files.push(path.clone());
        }
    }
    sort_in_migration_order(&mut files, options.layout);
    let mut report = lint_files(files, &staged, options, &mut paths)?;
    report.files.retain(|f| staged.contains_key(&f.path));
    Ok(report)
}

/// Lints `files` in the given order; `contents` replaces what is on disk for the files it names.
/// Worker threads read and parse the files, in order, while this thread lints each one as soon
/// as it and the neighbours its rules may read are parsed. A file's tree is dropped once no
/// later file can have it as a neighbour, so memory holds a window of trees, not all of them.
fn lint_files(
    files: Vec<PathBuf>,
    contents: &HashMap<PathBuf, Vec<u8>>,
    options: &LintOptions,
    paths: &mut canonical::CanonicalPaths,
) -> anyhow::Result<Report> {
    // The up migrations of each directory, in migration order, and each file's place in its
    // directory's list: the neighbours a file's rules may read.
    let mut dirs: HashMap<&Path, usize> = HashMap::new();
    let mut by_dir: Vec<Vec<usize>> = Vec::new();
    let mut place: Vec<Option<(usize, usize)>> = vec![None; files.len()];
    for (i, path) in files.iter().enumerate() {
        if !layout::is_down(options.layout, path) {
            let dir = path.parent().unwrap_or(Path::new(""));
            let d = *dirs.entry(dir).or_insert_with(|| {
                by_dir.push(Vec::new());
                by_dir.len() - 1
            });
            place[i] = Some((d, by_dir[d].len()));
            by_dir[d].push(i);
        }
    }

    let parsing = Parsing::new(files.len());
    let loaded = parsing.run(&files, contents, options.dialect, |parsing| {
        // Files taken from the workers so far, in list order.
        let mut loaded: Vec<Loaded> = Vec::with_capacity(files.len());
        // Each directory's latest parsed files, up to NEIGHBOURS: the next file's `before`.
        let mut recent: Vec<std::collections::VecDeque<usize>> =
            vec![std::collections::VecDeque::new(); by_dir.len()];
        let mut schema = Schema::default();
        for (i, path) in files.iter().enumerate() {
            let linted = match (options.baseline, layout::version(options.layout, path)) {
                (Some(baseline), Some(version)) => version > baseline,
                _ => true,
            };
            // The nearest later files of the directory that parsed, up to NEIGHBOURS of them.
            let mut after = Vec::new();
            if let Some((d, at)) = place[i].filter(|_| linted) {
                for &j in &by_dir[d][at + 1..] {
                    parsing.take_until(j, &mut loaded)?;
                    if loaded[j].parsed.is_some() {
                        after.push(j);
                        if after.len() == NEIGHBOURS {
                            break;
                        }
                    }
                }
            }
            parsing.take_until(i, &mut loaded)?;
            let neighbour = |j: &usize| Neighbour {
                path: &files[*j],
                text: &loaded[*j].text,
                parsed: loaded[*j]
                    .parsed
                    .as_ref()
                    .expect("only parsed files are neighbours"),
            };
            let findings = match &loaded[i].parsed {
                Some(parsed) => {
                    let (before, after): (Vec<Neighbour>, Vec<Neighbour>) = match place[i] {
                        Some((d, _)) if linted => (
                            recent[d].iter().map(neighbour).collect(),
                            after.iter().map(neighbour).collect(),
                        ),
                        _ => (Vec::new(), Vec::new()),
                    };
                    let neighbours = (before.as_slice(), after.as_slice());
                    let text = &loaded[i].text;
                    if layout::is_down(options.layout, path) {
                        // Linted with the schema its up migration built; what it undoes is not
                        // what later migrations see.
                        let mut scratch = schema.clone();
                        lint_among(
                            path,
                            text,
                            parsed,
                            &mut scratch,
                            options,
                            linted,
                            neighbours,
                        )
                    } else {
                        lint_among(path, text, parsed, &mut schema, options, linted, neighbours)
                    }
                }
                None => std::mem::take(&mut loaded[i].findings),
            };
            loaded[i].findings = findings;
            match place[i] {
                // The directory's last file: no later file reads its trees.
                Some((d, at)) if at + 1 == by_dir[d].len() => {
                    for gone in recent[d].drain(..) {
                        loaded[gone].parsed = None;
                    }
                    loaded[i].parsed = None;
                }
                Some((d, _)) if loaded[i].parsed.is_some() => {
                    recent[d].push_back(i);
                    if recent[d].len() > NEIGHBOURS
                        && let Some(gone) = recent[d].pop_front()
                    {
                        loaded[gone].parsed = None;
                    }
                }
                _ => loaded[i].parsed = None,
            }
        }
        Ok(loaded)
    })?;

    let mut report = Report::default();
    for (path, loaded) in files.into_iter().zip(loaded) {
        report.files.push(FileReport {
            path,
            text: loaded.text,
            findings: loaded.findings,
        });
    }
    add_naming_findings(&mut report, options, paths)?;
    Ok(report)
}

/// Naming rules look at the whole migrations directory (a duplicate version needs both files),
/// and report on the linted files that lie in it.
fn add_naming_findings(
    report: &mut Report,
    options: &LintOptions,
    paths: &mut canonical::CanonicalPaths,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let Some(dir) = options.migrations_dir.as_deref().filter(|d| d.is_dir()) else {
        return Ok(());
    };
    let Ok(canonical_dir) = dir.canonicalize() else {
        return Ok(());
    };
    let mut canonical = |p: &Path| paths.get(p);
    let linted: HashMap<PathBuf, usize> = report
        .files
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            canonical(&f.path)
                .filter(|c| c.starts_with(&canonical_dir))
                .map(|c| (c, i))
        })
        .collect();
    if linted.is_empty() {
        return Ok(());
    }
    let mut all = Vec::new();
    for entry in walkdir::WalkDir::new(dir).follow_links(true) {
        let entry = entry.with_context(|| format!("{}: cannot list", dir.display()))?;
        if entry.file_type().is_file() {
            all.push(entry.into_path());
        }
    }
    for (path, finding) in layout::check_names(options.layout, dir, &all) {
        if let Some(&i) = canonical(&path).and_then(|c| linted.get(&c)) {
            let mut findings = vec![finding];
            apply_levels(&mut findings, options);
            report.files[i].findings.splice(0..0, findings);
        }
    }
    Ok(())
}

/// Expands directories and orders files for linting. A path that does not exist is an error.
fn collect_files(
    inputs: &[PathBuf],
    layout: crate::config::MigrationLayout,
    paths: &mut canonical::CanonicalPaths,
) -> anyhow::Result<Vec<PathBuf>> {
    use anyhow::Context;
    let mut files = Vec::new();
    for input in inputs {
        let is_dir = match paths.is_dir(input) {
            Some(is_dir) => is_dir,
            None => std::fs::metadata(input)
                .with_context(|| format!("{}: cannot read", input.display()))?
                .is_dir(),
        };
        if is_dir {
            let mut found = Vec::new();
            for entry in walkdir::WalkDir::new(input).follow_links(true) {
                let entry = entry.with_context(|| format!("{}: cannot list", input.display()))?;
                if entry.file_type().is_file()
                    && entry.path().extension().is_some_and(|e| e == "sql")
                {
                    found.push(entry.into_path());
                }
            }
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    sort_in_migration_order(&mut files, layout);
    Ok(files)
}

/// Refinery's order (version), then path for files without one; duplicates removed.
fn sort_in_migration_order(files: &mut Vec<PathBuf>, layout: crate::config::MigrationLayout) {
    files.sort_by_cached_key(|p| layout::order_key(layout, p));
    files.dedup();
}

/// The version refinery gives a migration file (`V12__add_users.sql` -> 12), if it loads it.
pub use naming::migration_version;

struct Loaded {
    text: String,
    /// `None` when the file could not be parsed at all (not UTF-8); `findings` says why.
    parsed: Option<ParsedFile>,
    findings: Vec<Finding>,
}

/// The files being read and parsed by worker threads with large stacks (see
/// [`parse_guarded`]), in list order: each one's load waits in its slot until it is taken.
struct Parsing {
    slots: Vec<std::sync::Mutex<Option<anyhow::Result<Loaded>>>>,
    /// The file the consuming thread sleeps for, if it does: a worker wakes it only for that
    /// one, not for every file it finishes.
    lock: std::sync::Mutex<Option<usize>>,
    done: std::sync::Condvar,
    stop: std::sync::atomic::AtomicBool,
}

impl Parsing {
    fn new(files: usize) -> Parsing {
        Parsing {
            slots: (0..files).map(|_| std::sync::Mutex::new(None)).collect(),
            lock: std::sync::Mutex::new(None),
            done: std::sync::Condvar::new(),
            stop: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Runs `consume` on this thread while the workers load `files`; once it returns, the
    /// workers take no further file.
    fn run<T>(
        &self,
        files: &[PathBuf],
        contents: &HashMap<PathBuf, Vec<u8>>,
        dialect: Dialect,
        consume: impl FnOnce(&Parsing) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(files.len().max(1));
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                std::thread::Builder::new()
                    .stack_size(PARSE_STACK)
                    .spawn_scoped(scope, || {
                        while !self.stop.load(Ordering::Relaxed) {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(path) = files.get(i) else { break };
                            let loaded =
                                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                    load(path, contents.get(path).cloned(), dialect)
                                }))
                                .unwrap_or_else(|_| {
                                    Err(anyhow::anyhow!("{}: cannot read", path.display()))
                                });
                            *lock(&self.slots[i]) = Some(loaded);
                            if *lock(&self.lock) == Some(i) {
                                self.done.notify_all();
                            }
                        }
                    })
                    .expect("spawn parser thread");
            }
            let result = consume(self);
            self.stop.store(true, Ordering::Relaxed);
            result
        })
    }

    /// Moves the loads of the files up to `last` into `taken` (which holds those before it),
    /// waiting for the workers where needed; a file that could not be read is the error.
    fn take_until(&self, last: usize, taken: &mut Vec<Loaded>) -> anyhow::Result<()> {
        while taken.len() <= last {
            let i = taken.len();
            let ready = lock(&self.slots[i]).take();
            let loaded = match ready {
                Some(loaded) => loaded,
                None => {
                    let mut held = lock(&self.lock);
                    *held = Some(i);
                    loop {
                        if let Some(loaded) = lock(&self.slots[i]).take() {
                            *held = None;
                            break loaded;
                        }
                        held = self.done.wait(held).unwrap_or_else(|e| e.into_inner());
                    }
                }
            };
            taken.push(loaded?);
        }
        Ok(())
    }
}

/// A lock no panic can leave unusable: the workers catch their parse's panics, and the data
/// behind these locks stays whole at every point a panic could occur.
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn load(path: &Path, bytes: Option<Vec<u8>>, dialect: Dialect) -> anyhow::Result<Loaded> {
    use anyhow::Context;
    let bytes = match bytes {
        Some(bytes) => bytes,
        None => std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?,
    };
    match String::from_utf8(bytes) {
        Ok(text) => {
            let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                sql::parse(&text, dialect)
            }))
            .unwrap_or_else(|_| parser_failed());
            Ok(Loaded {
                text,
                parsed: Some(parsed),
                findings: Vec::new(),
            })
        }
        Err(err) => {
            let at = err.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(err.as_bytes()).into_owned();
            let finding = Finding {
                rule: RuleId::SyntaxError,
                severity: RuleId::SyntaxError.default_severity(),
                span: at..at,
                anchor: None,
                message: format!("the file is not UTF-8 text (invalid byte at offset {at}), so it was not linted"),
                help: "save migrations as UTF-8; a binary file does not belong in the migrations directory".into(),
                note: None,
                estimate: None,
            };
            Ok(Loaded {
                text,
                parsed: None,
                findings: vec![finding],
            })
        }
    }
}

#[cfg(test)]
mod tests {
    //! What the driver decides for every rule: text the parser recovered in, which tables are
    //! new, how names resolve, which files run outside a transaction.

    use super::RuleId::{
        BackfillDelete, BackfillUpdate, ConcurrentlyInTransaction, IndexNotConcurrent,
        RequireLockTimeout, SyntaxError, TransactionInMigration,
    };
    use super::rules::test_support::{lint_at, lint_errors, lint_last, lint_ok};
    use crate::sql::Dialect::{Postgres, Sqlite};

    /// The directives of a header are found among other comments, each with its own line.
    #[test]
    fn header_directives_keep_their_lines_among_other_comments() {
        let text = "-- Copyright line one\n-- line two\n/* block\n   comment */\n\
                    --   migrate: no-transaction\n-- more prose\n\
                    -- migrate: after-backfill V3__fill, V4__more\n\
                    CREATE INDEX CONCURRENTLY i ON t (a);\n-- migrate: after-backfill V9__late\n";
        for dialect in [Postgres, Sqlite] {
            let parsed = crate::sql::parse(text, dialect);
            let markers = super::header_markers(text, &parsed);
            assert_eq!(markers.no_transaction, Some(5), "{dialect:?}");
            assert_eq!(
                markers.after_backfill,
                vec![("V3__fill".to_string(), 7), ("V4__more".to_string(), 7)],
                "{dialect:?}"
            );
        }
    }

    /// Synapse's `$%AUTO_INCREMENT_PRIMARY_KEY%$` placeholder: the column type does not parse,
    /// and the parser's recovery reads `ON DELETE CASCADE` as a `DELETE`.
    const PLACEHOLDER: &str = "CREATE TABLE positions (\n    id $%AUTO_INCREMENT_PRIMARY_KEY%$,\n    conn BIGINT NOT NULL REFERENCES conns (id) ON DELETE CASCADE\n);\n";

    #[test]
    fn ok_no_rule_finding_in_text_the_parser_recovered_in() {
        lint_errors(PLACEHOLDER, Postgres, SyntaxError);
        lint_ok(PLACEHOLDER, Postgres, BackfillDelete);
        lint_ok(PLACEHOLDER, Postgres, RequireLockTimeout);
        // SQLite lists nothing of a statement that does not parse.
        let sqlite =
            "CREATE TABLE t (id INTEGER PRIMARY KEY, x REFERENCES u ON DELETE CASCADE,);\n";
        lint_errors(sqlite, Sqlite, SyntaxError);
        lint_ok(sqlite, Sqlite, BackfillDelete);
    }

    #[test]
    fn err_statements_after_the_recovered_text_are_still_linted() {
        let sql = format!(
            "{PLACEHOLDER}UPDATE users SET n = 0;\nCREATE INDEX i ON users (n);\nALTER TABLE users ADD COLUMN m int;\n"
        );
        lint_errors(&sql, Postgres, BackfillUpdate);
        lint_errors(&sql, Postgres, IndexNotConcurrent);
        // The first strong lock after the broken statement is the one reported.
        let found = lint_errors(&sql, Postgres, RequireLockTimeout);
        assert!(found[0].contains("ALTER TABLE waits"), "{found:?}");
        let sqlite = "CREATE TABLE t (id INTEGER PRIMARY KEY,,);\nUPDATE users SET n = 0;\n";
        lint_errors(sqlite, Sqlite, BackfillUpdate);
    }

    #[test]
    fn err_create_table_if_not_exists_of_an_existing_table() {
        // The table existed before the file: IF NOT EXISTS does nothing, and the UPDATE and the
        // index are on the existing table.
        let earlier = "CREATE TABLE users (id bigint PRIMARY KEY, n int);\n";
        let later = "CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY, n int);\nUPDATE users SET n = 0;\nCREATE INDEX users_n ON users (n);\n";
        for dialect in [Postgres, Sqlite] {
            assert_eq!(
                lint_last(&[earlier, later], dialect, BackfillUpdate).len(),
                1
            );
        }
        assert_eq!(
            lint_last(&[earlier, later], Postgres, IndexNotConcurrent).len(),
            1
        );
    }

    #[test]
    fn ok_create_table_if_not_exists_of_a_new_table() {
        let sql = "CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY, n int);\nUPDATE users SET n = 0;\n";
        for dialect in [Postgres, Sqlite] {
            lint_ok(sql, dialect, BackfillUpdate);
            // Dropped in the file first: created anew.
            let earlier = "CREATE TABLE users (id bigint PRIMARY KEY, n int);\n";
            let later = format!("DROP TABLE users;\n{sql}");
            assert_eq!(
                lint_last(&[earlier, &later], dialect, BackfillUpdate),
                Vec::<String>::new()
            );
        }
    }

    #[test]
    fn ok_autocommit_files_run_outside_a_transaction() {
        // ory/popx runs `*.autocommit.up.sql` without a transaction.
        let sql =
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS identities_nid_idx ON identities (nid);\n";
        let path = "20241029153900000001_identities.autocommit.up.sql";
        assert_eq!(
            lint_at(path, sql, Postgres, ConcurrentlyInTransaction),
            Vec::<String>::new()
        );
        let commit = "BEGIN;\nALTER TABLE t ADD COLUMN n int;\nCOMMIT;\n";
        assert_eq!(
            lint_at(path, commit, Postgres, TransactionInMigration),
            Vec::<String>::new()
        );
    }

    #[test]
    fn err_files_without_the_convention_run_in_the_runner_s_transaction() {
        let sql =
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS identities_nid_idx ON identities (nid);\n";
        let path = "20241029153900000001_identities.up.sql";
        assert_eq!(
            lint_at(path, sql, Postgres, ConcurrentlyInTransaction).len(),
            1
        );
        // The name must say it, not a directory or a table.
        let path = "autocommit/20241029153900000001_autocommit_identities.up.sql";
        assert_eq!(
            lint_at(path, sql, Postgres, ConcurrentlyInTransaction).len(),
            1
        );
    }

    #[test]
    fn err_a_table_of_another_schema_is_not_the_new_one() {
        // Created in `app`; the UPDATE names `users`, which the search path finds in `public`.
        let sql = "CREATE TABLE app.users (id bigint, n int);\nUPDATE users SET n = 0;\n";
        lint_errors(sql, Postgres, BackfillUpdate);
        // And the reverse.
        let sql = "CREATE TABLE users (id bigint, n int);\nUPDATE app.users SET n = 0;\n";
        lint_errors(sql, Postgres, BackfillUpdate);
        // A search path that does not start with `app` creates elsewhere.
        let sql = "SET search_path TO public, app;\nCREATE TABLE users (id bigint, n int);\nUPDATE app.users SET n = 0;\n";
        lint_errors(sql, Postgres, BackfillUpdate);
        // Quoted names keep their case: "Users" is not users.
        let sql = "CREATE TABLE \"Users\" (id bigint, n int);\nUPDATE users SET n = 0;\n";
        lint_errors(sql, Postgres, BackfillUpdate);
        // An existing table found first on the path, by an earlier migration.
        let earlier = "CREATE TABLE app.users (id bigint, n int);\n";
        let later = "SET search_path TO app, public;\nCREATE TABLE public.users (id bigint, n int);\nUPDATE users SET n = 0;\n";
        assert_eq!(
            lint_last(&[earlier, later], Postgres, BackfillUpdate).len(),
            1
        );
        // SQLite: `main` is not an attached database.
        lint_errors(
            "CREATE TABLE aux.users (id integer, n integer);\nUPDATE users SET n = 0;\n",
            Sqlite,
            BackfillUpdate,
        );
    }

    #[test]
    fn ok_names_that_resolve_to_the_new_table() {
        for sql in [
            "CREATE TABLE users (id bigint, n int);\nUPDATE public.users SET n = 0;\n",
            "CREATE TABLE public.users (id bigint, n int);\nUPDATE users SET n = 0;\n",
            "SET search_path TO app, public;\nCREATE TABLE users (id bigint, n int);\nUPDATE app.users SET n = 0;\nUPDATE users SET n = 1;\n",
            "SET search_path = 'app';\nCREATE TABLE app.users (id bigint, n int);\nUPDATE users SET n = 0;\n",
            "CREATE TABLE \"Users\" (id bigint, n int);\nUPDATE \"Users\" SET n = 0;\n",
            "CREATE TEMP TABLE users (id bigint, n int);\nUPDATE users SET n = 0;\n",
        ] {
            lint_ok(sql, Postgres, BackfillUpdate);
        }
        for sql in [
            "CREATE TABLE main.users (id integer, n integer);\nUPDATE users SET n = 0;\n",
            "CREATE TABLE users (id integer, n integer);\nUPDATE main.users SET n = 0;\n",
            "CREATE TEMP TABLE users (id integer, n integer);\nUPDATE users SET n = 0;\n",
        ] {
            lint_ok(sql, Sqlite, BackfillUpdate);
        }
    }
}
