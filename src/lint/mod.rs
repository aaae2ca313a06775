//! `migrate lint`: finds backfills and long locks hidden in schema migrations.
//!
//! The pipeline for a set of files: read each file (bytes; a file that is not UTF-8 is a
//! finding), parse it with the dialect's front end (in parallel, on threads with a large stack so
//! pathological nesting cannot overflow), then walk the files in migration order so facts carry
//! from one file to the next (a column's type, declared in an earlier migration, tells whether a
//! later type change rewrites the table). Rules see one file at a time through a [`FileCx`].
//! Suppression comments and configured severities are applied last, so every rule stays simple.

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
pub use schema::Schema;
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
    /// A `SET [LOCAL] lock_timeout` (to anything but 0) ran earlier in the file.
    pub lock_timeout_set: bool,
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
    /// For each table created in this file: the index of the statement that created it and the
    /// index of the one that dropped it (or `usize::MAX`).
    created: HashMap<String, Vec<(Option<String>, usize, usize)>>,
    /// The `-- migrate:` directives of the file's header (malformed ones count as none here:
    /// `migrate run` reports them).
    pub markers: crate::markers::Markers,
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
    let header = parsed
        .comments
        .iter()
        .filter(|c| c.span.start < first && text[c.span.start..].starts_with("--"))
        .map(|c| {
            let line = text[..c.span.start].matches('\n').count() + 1;
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
        let mut cx = FileCx {
            path,
            text,
            dialect: options.dialect,
            parsed,
            facts: Vec::with_capacity(parsed.statements.len()),
            schema,
            options,
            created: HashMap::new(),
            markers: {
                let mut markers = header_markers(text, parsed);
                if markers.no_transaction.is_none()
                    && layout::runs_outside_transaction(options.layout, path, text)
                {
                    markers.no_transaction = Some(1);
                }
                markers
            },
        };
        cx.compute_facts();
        cx
    }

    fn compute_facts(&mut self) {
        let wrapped = self.options.runner_wraps_in_transaction;
        let mut explicit = false;
        let mut lock_timeout = false;
        for (index, stmt) in self.parsed.statements.iter().enumerate() {
            self.facts.push(StmtFacts {
                in_transaction: explicit || wrapped,
                in_explicit_transaction: explicit,
                lock_timeout_set: lock_timeout,
            });
            match &stmt.kind {
                StmtKind::Transaction(TransactionControl::Begin) => explicit = true,
                StmtKind::Transaction(_) => explicit = false,
                StmtKind::Set { name, value, .. } if name == "lock_timeout" => {
                    let v = value.trim();
                    lock_timeout = !(v == "0" || v.eq_ignore_ascii_case("default"));
                }
                StmtKind::CreateTable { table, .. } | StmtKind::SelectInto { table, .. } => {
                    self.mark_created(table, index)
                }
                StmtKind::DropTable { tables } => {
                    for table in tables.clone() {
                        self.mark_dropped(&table, index);
                    }
                }
                StmtKind::AlterTable { table, actions } => {
                    for action in actions {
                        if let sql::AlterAction::RenameTable { new_name } = action
                            && self.is_new_table(index, table)
                        {
                            let new_name = Name {
                                schema: new_name.schema.clone().or_else(|| table.schema.clone()),
                                name: new_name.name.clone(),
                            };
                            self.mark_dropped(&table.clone(), index);
                            self.mark_created(&new_name, index);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn mark_created(&mut self, table: &Name, index: usize) {
        self.created.entry(table.name.clone()).or_default().push((
            table.schema.clone(),
            index,
            usize::MAX,
        ));
    }

    fn mark_dropped(&mut self, table: &Name, index: usize) {
        if let Some(entries) = self.created.get_mut(&table.name) {
            for entry in entries.iter_mut() {
                if entry.2 == usize::MAX && schemas_match(&entry.0, &table.schema) {
                    entry.2 = index;
                }
            }
        }
    }

    /// Whether `table` was created by a statement before statement `index` in this file (and not
    /// dropped since): such a table is new, so writing to it is not a backfill.
    pub fn is_new_table(&self, index: usize, table: &Name) -> bool {
        self.created.get(&table.name).is_some_and(|entries| {
            entries.iter().any(|(schema, from, to)| {
                *from < index && index <= *to && schemas_match(schema, &table.schema)
            })
        })
    }

    /// Whether `table` existed before this migration (it was not created earlier in this file)
    /// and is not configured as small: the tables a backfill rule cares about.
    pub fn is_existing_large_table(&self, index: usize, table: &Name) -> bool {
        !self.is_new_table(index, table) && !self.options.is_small_table(table)
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

fn schemas_match(a: &Option<String>, b: &Option<String>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
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
    let mut findings = Vec::new();
    if report {
        let cx = FileCx::new(path, text, parsed, schema, options);
        for issue in &parsed.syntax_errors {
            findings.push(Finding {
                rule: RuleId::SyntaxError,
                severity: RuleId::SyntaxError.default_severity(),
                span: issue.span.clone(),
                anchor: Some(issue.span.clone()),
                message: issue.message.clone(),
                help: "fix the statement so that the database would accept it; the rest of the file was still linted".into(),
                note: None,
            });
        }
        rules::check_all(&cx, &mut findings);
        findings = suppress::apply(parsed, findings);
        apply_levels(&mut findings, options);
        findings.sort_by_key(|f| (f.span.start, f.rule));
    }
    schema.apply(parsed);
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
    let files = collect_files(inputs, options.layout)?;
    lint_files(files, &HashMap::new(), options)
}

/// Lints what a commit would contain: `staged` maps files (as found under `inputs`, or added by
/// the commit) to their staged content. Only those files are reported on; the other files under
/// `inputs` are read as they are, for the schema they build, as earlier migrations would have.
pub fn lint_staged(
    inputs: &[PathBuf],
    staged: HashMap<PathBuf, Vec<u8>>,
    options: &LintOptions,
) -> anyhow::Result<Report> {
    let mut files = collect_files(inputs, options.layout)?;
    for path in staged.keys() {
        if !files.contains(path) {
            files.push(path.clone());
        }
    }
    sort_in_migration_order(&mut files, options.layout);
    let mut report = lint_files(files, &staged, options)?;
    report.files.retain(|f| staged.contains_key(&f.path));
    Ok(report)
}

/// Lints `files` in the given order; `contents` replaces what is on disk for the files it names.
fn lint_files(
    files: Vec<PathBuf>,
    contents: &HashMap<PathBuf, Vec<u8>>,
    options: &LintOptions,
) -> anyhow::Result<Report> {
    let parsed = read_and_parse_all(&files, contents, options.dialect)?;

    let mut schema = Schema::default();
    let mut report = Report::default();
    for (path, loaded) in files.iter().zip(parsed) {
        let findings = match &loaded.parsed {
            Some(parsed) => {
                let linted = match (options.baseline, layout::version(options.layout, path)) {
                    (Some(baseline), Some(version)) => version > baseline,
                    _ => true,
                };
                if layout::is_down(options.layout, path) {
                    // Linted with the schema its up migration built; what it undoes is not
                    // what later migrations see.
                    let mut scratch = schema.clone();
                    lint_parsed(path, &loaded.text, parsed, &mut scratch, options, linted)
                } else {
                    lint_parsed(path, &loaded.text, parsed, &mut schema, options, linted)
                }
            }
            None => loaded.findings.clone(),
        };
        report.files.push(FileReport {
            path: path.clone(),
            text: loaded.text,
            findings,
        });
    }
    add_naming_findings(&mut report, options)?;
    Ok(report)
}

/// Naming rules look at the whole migrations directory (a duplicate version needs both files),
/// and report on the linted files that lie in it.
fn add_naming_findings(report: &mut Report, options: &LintOptions) -> anyhow::Result<()> {
    use anyhow::Context;
    let Some(dir) = options.migrations_dir.as_deref().filter(|d| d.is_dir()) else {
        return Ok(());
    };
    let Ok(canonical_dir) = dir.canonicalize() else {
        return Ok(());
    };
    let canonical = |p: &Path| p.canonicalize().ok();
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
) -> anyhow::Result<Vec<PathBuf>> {
    use anyhow::Context;
    let mut files = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input)
            .with_context(|| format!("{}: cannot read", input.display()))?;
        if meta.is_dir() {
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

/// Reads and parses every file on worker threads with large stacks (see [`parse_guarded`]).
fn read_and_parse_all(
    files: &[PathBuf],
    contents: &HashMap<PathBuf, Vec<u8>>,
    dialect: Dialect,
) -> anyhow::Result<Vec<Loaded>> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len().max(1));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<anyhow::Result<Loaded>>>> =
        Mutex::new((0..files.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            std::thread::Builder::new()
                .stack_size(PARSE_STACK)
                .spawn_scoped(scope, || {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(path) = files.get(i) else { break };
                        let loaded = load(path, contents.get(path).cloned(), dialect);
                        results
                            .lock()
                            .expect("no worker panics while holding the lock")[i] = Some(loaded);
                    }
                })
                .expect("spawn parser thread");
        }
    });
    results
        .into_inner()
        .expect("workers finished")
        .into_iter()
        .map(|r| r.expect("every file was loaded"))
        .collect()
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
            };
            Ok(Loaded {
                text,
                parsed: None,
                findings: vec![finding],
            })
        }
    }
}
