//! Rule ids: the names config, suppression comments and every output format use.

use std::fmt;
use std::str::FromStr;

/// A rule's family. Shown as `category` in every output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// Row-scaling data changes hidden in a schema migration.
    Backfill,
    /// Statements that take strong locks for longer than they need to.
    Lock,
    /// Migration files that the migration runner would skip or mis-order.
    Naming,
    /// Data migrations (`data-migrations/`) that the batch engine cannot run safely.
    DataMigration,
    /// SQL that does not parse, files that are not text, names the database does not keep as
    /// written.
    Syntax,
    /// Suppression comments that are malformed or unused.
    Suppression,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Backfill => "backfill",
            Category::Lock => "lock",
            Category::Naming => "naming",
            Category::DataMigration => "data-migration",
            Category::Syntax => "syntax",
            Category::Suppression => "suppression",
        }
    }
}

/// How a finding counts. `error` findings make `migrate lint` exit 1.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// A severity as configured: a rule can also be turned off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Off,
    Warning,
    Error,
}

impl Level {
    pub fn severity(self) -> Option<Severity> {
        match self {
            Level::Off => None,
            Level::Warning => Some(Severity::Warning),
            Level::Error => Some(Severity::Error),
        }
    }
}

macro_rules! rules {
    ($( $(#[doc = $doc:literal])* $variant:ident = $id:literal, $category:ident, $severity:ident; )*) => {
        /// Every rule the linter knows, by its kebab-case id.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum RuleId {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl RuleId {
            pub const ALL: &'static [RuleId] = &[$(RuleId::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(RuleId::$variant => $id,)* }
            }

            pub fn category(self) -> Category {
                match self { $(RuleId::$variant => Category::$category,)* }
            }

            pub fn default_severity(self) -> Severity {
                match self { $(RuleId::$variant => Severity::$severity,)* }
            }

            /// One line describing what the rule catches (for `--help`, SARIF rule metadata).
            pub fn description(self) -> &'static str {
                match self { $(RuleId::$variant => concat!($($doc),*).trim_ascii(),)* }
            }
        }

        impl FromStr for RuleId {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                match s { $($id => Ok(RuleId::$variant),)* _ => Err(()) }
            }
        }
    };
}

rules! {
    /// An UPDATE of a table that existed before the migration rewrites its rows inside the migration.
    BackfillUpdate = "backfill-update", Backfill, Error;
    /// A DELETE from a table that existed before the migration scans and deletes rows inside the migration.
    BackfillDelete = "backfill-delete", Backfill, Error;
    /// A MERGE into a table that existed before the migration (or from one into a new table) writes rows inside the migration.
    BackfillMerge = "backfill-merge", Backfill, Error;
    /// INSERT ... SELECT (or REPLACE ... SELECT) copies rows from existing tables inside the migration.
    BackfillInsertSelect = "backfill-insert-select", Backfill, Error;
    /// CREATE TABLE AS / SELECT INTO copies every row of an existing table inside the migration.
    BackfillCreateTableAs = "backfill-create-table-as", Backfill, Error;
    /// COPY ... FROM loads rows into an existing table inside the migration.
    BackfillCopy = "backfill-copy", Backfill, Error;
    /// DML inside a DO block (or in a function the migration defines and then calls) runs now, with the migration, on existing tables.
    BackfillDoBlock = "backfill-do-block", Backfill, Error;
    /// ALTER COLUMN ... TYPE to a type that is not binary-coercible rewrites the whole table.
    BackfillAlterColumnType = "backfill-alter-column-type", Backfill, Error;
    /// ADD COLUMN with a volatile default (gen_random_uuid(), random(), clock_timestamp(), serial) rewrites the whole table.
    BackfillVolatileDefault = "backfill-volatile-default", Backfill, Error;
    /// ADD COLUMN ... GENERATED ALWAYS AS (...) STORED (or AS IDENTITY) computes and writes every row.
    BackfillStoredGeneratedColumn = "backfill-stored-generated-column", Backfill, Error;
    /// The table-rebuild pattern (create new, copy rows, drop old, rename) copies every row.
    BackfillTableRebuild = "backfill-table-rebuild", Backfill, Error;
    /// CREATE INDEX / DROP INDEX without CONCURRENTLY, or ADD UNIQUE / PRIMARY KEY without USING INDEX, blocks writes to an existing table while it runs.
    IndexNotConcurrent = "index-not-concurrent", Lock, Error;
    /// CREATE/DROP INDEX CONCURRENTLY cannot run inside a transaction block, and refinery wraps each migration in one.
    ConcurrentlyInTransaction = "concurrently-in-transaction", Lock, Error;
    /// ADD FOREIGN KEY or CHECK without NOT VALID (or inline in ADD COLUMN) scans the whole table under a strong lock.
    ConstraintWithoutNotValid = "constraint-without-not-valid", Lock, Error;
    /// SET NOT NULL on an existing column scans the whole table under an ACCESS EXCLUSIVE lock.
    SetNotNull = "set-not-null", Lock, Error;
    /// An ACCESS EXCLUSIVE (or SHARE ROW EXCLUSIVE) operation without a preceding lock_timeout can queue every query behind it.
    RequireLockTimeout = "require-lock-timeout", Lock, Warning;
    /// REINDEX without CONCURRENTLY blocks writes to the table, and reads through the index, while it rebuilds.
    ReindexNotConcurrent = "reindex-not-concurrent", Lock, Error;
    /// BEGIN / COMMIT / ROLLBACK in a migration the runner already wraps in a transaction: a COMMIT ends the runner's transaction early.
    TransactionInMigration = "transaction-in-migration", Lock, Error;
    /// A table, column, index, view or constraint name over 63 bytes, which PostgreSQL silently truncates.
    IdentifierTooLong = "identifier-too-long", Syntax, Warning;
    /// A migration file refinery silently skips because its name does not match `[UV]{version}__{name}.sql`.
    MigrationNameSkipped = "migration-name-skipped", Naming, Error;
    /// Two migration files with one version: refinery refuses to run either.
    DuplicateMigrationVersion = "duplicate-migration-version", Naming, Error;
    /// SQL that does not parse, or a file that is not UTF-8 text.
    SyntaxError = "syntax-error", Syntax, Error;
    /// A suppression comment naming a rule id that does not exist.
    SuppressionUnknownRule = "suppression-unknown-rule", Suppression, Error;
    /// A suppression comment without a reason.
    SuppressionMissingReason = "suppression-missing-reason", Suppression, Error;
    /// A suppression comment that suppressed nothing.
    SuppressionUnused = "suppression-unused", Suppression, Warning;
    /// A data migration that the batch engine cannot run safely.
    DataMigrationInvalid = "data-migration-invalid", DataMigration, Error;
    /// A schema migration contracts what a data migration fills or reads (SET NOT NULL, a validated CHECK, a drop or rename) without `-- migrate: after-backfill` waiting for it.
    ContractWithoutGate = "contract-without-gate", Backfill, Error;
    /// ADD COLUMN ... NOT NULL without a DEFAULT on an existing table fails on its rows (it passes only on an empty database).
    AddingRequiredColumn = "adding-required-column", Backfill, Error;
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
