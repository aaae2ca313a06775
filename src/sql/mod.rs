//! A dialect-neutral view of SQL statements: what each statement does, to which tables, and where
//! in the file it is.
//!
//! Each dialect has a front end that turns a file's text into a [`ParsedFile`] with a real parser
//! (`postgres`: squawk-syntax, which follows PostgreSQL's own grammar and parses PL/pgSQL bodies;
//! `sqlite`: sqlparser's SQLite dialect). Lint rules only ever see this view, so each rule is
//! written once for both dialects. The view keeps what rules need and nothing more: it is not an
//! AST, and a front end that cannot tell a fact reports the conservative value documented on the
//! field.
//!
//! Conventions every front end follows:
//! - Spans are byte ranges into the file's text, never including the terminating `;`.
//! - Identifiers are normalized the way the database compares them: unquoted names are
//!   lower-cased, quoted names are kept as written (without the quotes).
//! - Statements come in source order. Statements found *inside* another statement (a DML in a
//!   `WITH` clause, the body of a `DO` block, a string run by `EXECUTE`) are listed right after
//!   the statement that contains them, with an [`Origin`] that says where they run and an
//!   `anchor` that is the span of the top-level statement (suppression comments attach to it).

use std::fmt;
use std::ops::Range;

// The front ends are the linter's; the data-migration commands only use the shared types.
#[cfg(feature = "lint")]
pub mod postgres;
#[cfg(feature = "lint")]
pub mod sqlite;

/// A byte range into a file's text.
pub type Span = Range<usize>;

/// The SQL dialect a file is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[derive(clap::ValueEnum)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Sqlite => "sqlite",
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses `text` with the front end of `dialect`. Never panics, whatever the input.
#[cfg(feature = "lint")]
pub fn parse(text: &str, dialect: Dialect) -> ParsedFile {
    match dialect {
        Dialect::Postgres => postgres::parse(text),
        Dialect::Sqlite => sqlite::parse(text),
    }
}

/// Everything a front end found in one file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedFile {
    /// Statements in source order, nested ones right after their container.
    pub statements: Vec<Statement>,
    /// Text that did not parse. The rest of the file is still parsed: a front end resynchronizes
    /// at the next statement it can find.
    pub syntax_errors: Vec<SyntaxIssue>,
    /// Every comment in the file (`-- ...` and `/* ... */`), in source order, outside string
    /// literals and dollar quotes. Suppression comments are read from these.
    pub comments: Vec<Comment>,
    /// Where the parser had to recover from a syntax error, in source order, not overlapping: from
    /// the start of the statement the error is in (or the error itself, between statements) to the
    /// end of the next `;` (or of the file). What the front end lists in there is its best guess
    /// at broken text (`ON DELETE CASCADE` after an unparseable column type reads as a
    /// `DELETE`), so rules report nothing about it; the syntax issue says what is wrong.
    pub recovered: Vec<Span>,
}

impl ParsedFile {
    /// Whether `span` (a statement's anchor) overlaps a region the parser recovered in.
    pub fn is_recovered(&self, span: &Span) -> bool {
        let at = self.recovered.partition_point(|r| r.end <= span.start);
        self.recovered
            .get(at)
            .is_some_and(|r| r.start < span.end.max(span.start + 1))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxIssue {
    pub span: Span,
    /// One line, lower-case start, no trailing period: "expected `;`, found `FROM`".
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub span: Span,
    /// The comment's text without its `--` or `/*` `*/` markers, untrimmed.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// The statement's own text.
    pub span: Span,
    /// The top-level statement this one is part of (equal to `span` for top-level statements).
    pub anchor: Span,
    pub origin: Origin,
    pub kind: StmtKind,
}

/// Where a statement runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A statement of the migration itself.
    TopLevel,
    /// A data-modifying statement in a `WITH` clause of another statement.
    Cte,
    /// A statement of a `DO` block's body: it runs now, when the migration runs.
    DoBlock,
    /// SQL text run by `EXECUTE` in a `DO` block: a string literal, the format string of
    /// `format(...)`, or a `||` chain of literals, with run-time values (`%I`/`%s`/`%L`
    /// placeholders, variables) replaced by stand-in identifiers. The statements carry the span of
    /// the `EXECUTE` statement.
    DoExecute,
}

/// A table (or index, view, function) name, normalized as described in the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name {
    pub schema: Option<String>,
    pub name: String,
}

impl Name {
    pub fn new(name: impl Into<String>) -> Self {
        Name {
            schema: None,
            name: name.into(),
        }
    }

    pub fn qualified(schema: impl Into<String>, name: impl Into<String>) -> Self {
        Name {
            schema: Some(schema.into()),
            name: name.into(),
        }
    }

    /// Whether two references can name the same object: names equal, and schemas equal where both
    /// are given (an unqualified name resolves through the search path, so it may match any).
    pub fn same_object(&self, other: &Name) -> bool {
        self.name == other.name
            && match (&self.schema, &other.schema) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// What a statement does. Anything rules do not look at is [`StmtKind::Other`].
#[derive(Debug, Clone, PartialEq)]
pub enum StmtKind {
    /// `CREATE TABLE`, including `CREATE TABLE ... AS SELECT` (then `as_query` is set and
    /// `columns` is usually empty).
    CreateTable {
        table: Name,
        columns: Vec<ColumnDef>,
        /// Table-level constraints (`FOREIGN KEY (...) REFERENCES`, `CHECK`, ...).
        constraints: Vec<Constraint>,
        as_query: Option<Query>,
        /// `CREATE TABLE ... AS ... WITH NO DATA`: no rows are copied.
        with_no_data: bool,
        temporary: bool,
        /// `CREATE TABLE IF NOT EXISTS`: does nothing when the table already exists.
        if_not_exists: bool,
    },
    /// `SELECT ... INTO new_table FROM ...` (PostgreSQL).
    SelectInto {
        table: Name,
        query: Query,
    },
    /// `CREATE [MATERIALIZED] VIEW`.
    CreateView {
        name: Name,
        materialized: bool,
        /// `CREATE OR REPLACE VIEW`: replaces an existing view of that name, if there is one.
        or_replace: bool,
        query: Query,
        /// `CREATE MATERIALIZED VIEW ... WITH NO DATA`: the view is left unpopulated (without it,
        /// the query runs and its rows are stored now).
        with_no_data: bool,
    },
    Insert {
        table: Name,
        source: InsertSource,
        /// `REPLACE INTO` / `INSERT OR REPLACE` (SQLite).
        replace: bool,
    },
    Update {
        table: Name,
        /// Tables read by `FROM`, subqueries in `SET` and `WHERE`.
        reads: Vec<Name>,
        filter: Option<Filter>,
    },
    Delete {
        table: Name,
        /// Tables read by `USING` and subqueries in `WHERE`.
        reads: Vec<Name>,
        filter: Option<Filter>,
    },
    Merge {
        table: Name,
        source: Query,
        /// A `WHEN NOT MATCHED BY SOURCE` clause (PostgreSQL 17): it acts on every row of the
        /// target the source does not match, however few rows the source has.
        by_source: bool,
    },
    Copy {
        /// `None` for `COPY (query) TO`.
        table: Option<Name>,
        direction: CopyDirection,
    },
    AlterTable {
        table: Name,
        actions: Vec<AlterAction>,
    },
    /// `DROP TABLE a, b`.
    DropTable {
        tables: Vec<Name>,
    },
    /// `TRUNCATE a, b`.
    Truncate {
        tables: Vec<Name>,
    },
    CreateIndex {
        name: Option<Name>,
        table: Name,
        concurrently: bool,
        unique: bool,
    },
    DropIndex {
        names: Vec<Name>,
        concurrently: bool,
    },
    /// `REINDEX`: rebuilds indexes.
    Reindex {
        target: ReindexTarget,
        /// `CONCURRENTLY`, or the `(CONCURRENTLY)` option (PostgreSQL); SQLite has neither.
        concurrently: bool,
    },
    /// `BEGIN` / `START TRANSACTION`, `COMMIT` / `END`, `ROLLBACK`.
    Transaction(TransactionControl),
    /// `SET [LOCAL | SESSION] name = value` and `SET name TO value`; `value` is the literal's
    /// text without quotes (`'5s'` becomes `5s`).
    Set {
        name: String,
        value: String,
        local: bool,
    },
    /// A `DO` block. Its body's statements follow it with origin [`Origin::DoBlock`] or
    /// [`Origin::DoExecute`].
    Do {
        /// `plpgsql` unless a `LANGUAGE` clause says otherwise.
        language: String,
        /// Whether the front end understood the whole body. When it did not (another language,
        /// PL/pgSQL its grammar does not know), the statements it could read are still listed
        /// and no syntax issue is reported: PostgreSQL checks a `DO` body only when it runs it.
        body_parsed: bool,
    },
    /// `CREATE [OR REPLACE] FUNCTION` / `PROCEDURE`: defines code that runs later. Its body's
    /// statements are *not* listed among the file's: they are in `body`, and run when (and each
    /// time) the routine is called.
    CreateFunction {
        name: Name,
        procedure: bool,
        /// The statements the body runs, as a DO block's would be listed (PL/pgSQL at any depth,
        /// `EXECUTE` strings, `LANGUAGE sql` string bodies, `BEGIN ATOMIC`), with their spans in
        /// the file (an `EXECUTE` string's statements carry the `EXECUTE`'s span) and the
        /// `CREATE` statement as anchor. Empty when the body is in a language the front end does
        /// not read.
        body: Vec<Statement>,
        /// As declared; PostgreSQL's default is `VOLATILE`.
        volatility: Volatility,
        /// Lower-cased (`plpgsql`, `sql`, `c`); `sql` when no `LANGUAGE` clause says otherwise.
        language: String,
        /// The expression a call becomes when PostgreSQL inlines the function while planning
        /// (a `LANGUAGE sql` function whose body is one `SELECT expr` without `FROM`, or
        /// `RETURN expr`; not `SECURITY DEFINER`, no `SET` clause, not set-returning). An inlined
        /// call is as volatile as this expression, whatever the declaration says. A PL/pgSQL
        /// function is never inlined.
        inline: Option<Expr>,
        /// `RETURNS SETOF ...` / `RETURNS TABLE (...)`: the function is a source of rows.
        returns_set: bool,
    },
    CreateTrigger {
        name: Name,
        table: Name,
    },
    /// A top-level `SELECT` (not `SELECT ... INTO`), e.g. `SELECT setval(...)` or
    /// `SELECT my_backfill()`.
    Select {
        query: Query,
    },
    /// `CALL name(...)`.
    Call {
        name: Name,
    },
    /// Anything else, described by its leading keywords in upper case (`"CREATE TYPE"`).
    Other {
        what: String,
    },
}

/// How a function's result may change between calls (`pg_proc.provolatile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Volatility {
    Immutable,
    Stable,
    Volatile,
}

/// What a `REINDEX` rebuilds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReindexTarget {
    /// `REINDEX INDEX name`.
    Index(Name),
    /// `REINDEX TABLE name`: every index of the table.
    Table(Name),
    /// `REINDEX name` (SQLite): a table, an index or a collation.
    Named(Name),
    /// Every index of a schema, the database or the system catalogs, named by the upper-case
    /// keyword (`SCHEMA`, `DATABASE`, `SYSTEM`); SQLite's bare `REINDEX` is `DATABASE`.
    Many(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionControl {
    Begin,
    Commit,
    Rollback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyDirection {
    From,
    To,
}

/// The essentials of a query (a `SELECT`, `VALUES`, or set operation).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// Every table the query reads (FROM, JOIN, subqueries, set operations), without the names of
    /// its own CTEs, deduplicated, in first-seen order.
    pub reads: Vec<Name>,
    /// The tables the query's result rows are produced from: what a statement that stores those
    /// rows (`INSERT ... SELECT`, `CREATE TABLE AS`, `MERGE ... USING`) copies. Deduplicated, in
    /// first-seen order. It holds the `FROM` / `JOIN` items of the query's `SELECT` (every branch
    /// of a `UNION` / `INTERSECT` / `EXCEPT`, and `TABLE t`), followed through:
    /// - derived tables (`FROM (SELECT ...) AS d`, `LATERAL` ones included): their sources;
    /// - references to CTEs (the query's own, or the siblings of the data-modifying CTE it is):
    ///   the referenced CTE's sources (a data-modifying CTE has none: it is a statement of its
    ///   own);
    /// - table functions in `FROM` (`generate_series(1, (SELECT max(id) FROM t))`,
    ///   `unnest(...)`): every table read anywhere in their arguments, since the number of rows
    ///   may follow them.
    ///
    /// It does not hold tables read only by subqueries in the select list (a scalar subquery
    /// gives one value per row, not rows), in `WHERE`, `HAVING`, `JOIN ... ON`, `ORDER BY` or
    /// `LIMIT`, nor by CTEs the query never selects from. A `VALUES` list has no sources, even when
    /// its rows hold subqueries. So `SELECT 'a' WHERE NOT EXISTS (SELECT 1 FROM t)` reads `t` and
    /// has no source: it produces at most one row, whatever the size of `t`.
    ///
    /// It is a subset of `reads` but for one case: a data-modifying statement in a `WITH` clause
    /// that selects from a sibling CTE has that CTE's sources, while its `reads` leave out the
    /// sibling's body (its container reads it).
    pub sources: Vec<Name>,
    /// Functions the query calls, lower-cased and unqualified (`now`, `gen_random_uuid`).
    pub calls: Vec<String>,
    /// Functions among `calls` whose rows would be rows of the query if they return sets
    /// (lower-cased, unqualified): table functions in the `FROM` items that `sources` follows,
    /// and every function called in the select lists of those queries (outside subqueries).
    /// Whether a user-defined one returns a set, and what it reads, is known only from its
    /// definition, so rules look it up; the tables the arguments of a built-in set-returning
    /// function read (`generate_series`, `unnest`, ...) are in `sources` already.
    pub row_functions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum InsertSource {
    /// `VALUES (...), (...)`. `reads` lists tables read by subqueries inside the rows (usually
    /// none: a row of constants).
    Values {
        rows: usize,
        reads: Vec<Name>,
    },
    /// `INSERT ... SELECT` (any query other than a plain `VALUES`).
    Query(Query),
    DefaultValues,
}

/// A `WHERE` clause, summarized.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// The clause's text (without `WHERE`).
    pub text: String,
    /// True when it is only `column = constant` / `column IN (constants)` comparisons joined by
    /// `AND` (the shape of a seed-row fix-up touching a handful of rows).
    pub point_lookup: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    pub data_type: TypeName,
    pub default: Option<Expr>,
    pub generated: Option<Generated>,
    pub not_null: bool,
    /// Inline constraints (`REFERENCES`, `CHECK`, `UNIQUE`, `PRIMARY KEY`).
    pub constraints: Vec<Constraint>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generated {
    /// `GENERATED ALWAYS AS (expr) STORED`: every existing row is computed and written.
    Stored,
    /// `GENERATED ALWAYS AS (expr) [VIRTUAL]`: computed on read.
    Virtual,
    /// `GENERATED { ALWAYS | BY DEFAULT } AS IDENTITY`: every existing row gets a value.
    Identity,
}

/// A type as written, lower-cased, with its modifiers: `varchar(255)` is
/// `{ name: "varchar", modifiers: ["255"], array: false }`. Front ends map multi-word names to
/// one word as PostgreSQL's `format_type` would abbreviate them: `character varying` is
/// `varchar`, `double precision` stays `double precision`, `timestamp with time zone` is
/// `timestamptz`; see [`TypeName::canonical`] for aliases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeName {
    pub name: String,
    pub modifiers: Vec<String>,
    pub array: bool,
}

impl TypeName {
    pub fn new(name: impl Into<String>) -> Self {
        TypeName {
            name: name.into(),
            modifiers: Vec::new(),
            array: false,
        }
    }

    /// The name PostgreSQL's catalog uses for this type, so aliases compare equal: `int` and
    /// `integer` are `int4`, `bigint` is `int8`, `character varying` is `varchar`, ...
    pub fn canonical(&self) -> &str {
        let name = self.name.trim_start_matches("pg_catalog.");
        match name {
            "int" | "integer" | "int4" | "serial" | "serial4" => "int4",
            "bigint" | "int8" | "bigserial" | "serial8" => "int8",
            "smallint" | "int2" | "smallserial" | "serial2" => "int2",
            "character varying" | "varchar" => "varchar",
            "character" | "char" | "bpchar" => "bpchar",
            "boolean" | "bool" => "bool",
            "real" | "float4" => "float4",
            "double precision" | "float8" | "float" => "float8",
            "decimal" | "numeric" => "numeric",
            "timestamp" | "timestamp without time zone" => "timestamp",
            "timestamptz" | "timestamp with time zone" => "timestamptz",
            "time" | "time without time zone" => "time",
            "timetz" | "time with time zone" => "timetz",
            "varbit" | "bit varying" => "varbit",
            other => other,
        }
    }
}

impl fmt::Display for TypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if !self.modifiers.is_empty() {
            write!(f, "({})", self.modifiers.join(","))?;
        }
        if self.array {
            f.write_str("[]")?;
        }
        Ok(())
    }
}

/// An expression, summarized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    pub text: String,
    /// Functions called anywhere in it, lower-cased and unqualified (`nextval`, `now`).
    pub calls: Vec<String>,
    /// Tables read by subqueries in it.
    pub reads: Vec<Name>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    pub name: Option<String>,
    pub kind: ConstraintKind,
    /// `NOT VALID`: existing rows are not checked now.
    pub not_valid: bool,
    /// For a CHECK of the form `c IS NOT NULL` (or several joined by `AND`): the columns it
    /// proves not null, which lets a later `SET NOT NULL` skip its scan once the check is
    /// validated.
    pub not_null_columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConstraintKind {
    ForeignKey {
        references: Name,
    },
    Check,
    Unique {
        /// `UNIQUE USING INDEX idx`: adopts an index built beforehand (no table scan).
        using_index: bool,
    },
    PrimaryKey {
        using_index: bool,
    },
    Exclude,
    NotNull,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AlterAction {
    AddColumn {
        column: ColumnDef,
    },
    DropColumn {
        column: String,
    },
    /// `ALTER COLUMN c [SET DATA] TYPE t [USING expr]`.
    AlterColumnType {
        column: String,
        data_type: TypeName,
        using: Option<Expr>,
    },
    SetNotNull {
        column: String,
    },
    DropNotNull {
        column: String,
    },
    SetDefault {
        column: String,
        default: Expr,
    },
    DropDefault {
        column: String,
    },
    AddConstraint(Constraint),
    ValidateConstraint {
        name: String,
    },
    DropConstraint {
        name: String,
    },
    /// `ALTER TABLE t RENAME TO new`.
    RenameTable {
        new_name: Name,
    },
    RenameColumn {
        from: String,
        to: String,
    },
    /// Anything else, in upper-case leading keywords (`"SET LOGGED"`, `"OWNER TO"`).
    Other {
        what: String,
    },
}
