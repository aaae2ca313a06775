//! Migration file names as refinery 0.10 reads them: which files it runs, in which order, and
//! which it skips or chokes on.
//!
//! refinery (`refinery-core` 0.10.1, `util.rs`) walks the migrations directory at any depth,
//! sorted by file name, and keeps the files whose name matches
//! `^([U|V])(\d+(?:\.\d+)?)__(\w+)\.sql$` (Unicode `\d` and `\w`); every other file is skipped
//! with only a log line. A kept file's version is then parsed as a `SchemaVersion` (`i32`), which
//! fails for `V1.5__x.sql`, for non-ASCII digits and for versions past `i32::MAX`: loading the
//! directory fails and no migration runs. The pattern's `[U|V]` also admits `|`, and
//! `|1__x.sql` makes the loader panic (`unreachable!`). Versions are integers, so `V1__a.sql`
//! and `V01__b.sql` share version 1; what refinery then does is spelled out in
//! [`check_names`]'s findings.
//!
//! The matcher here is written by hand (a file name is not SQL, but the regex crate is not
//! needed for one fixed pattern); its character classes come from `regex-syntax`, the tables
//! refinery's regex is built from, so the two agree on every Unicode character. Tests check it
//! against `refinery::load_sql_migrations` itself.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::{Finding, RuleId};

/// A migration version as refinery stores it (`refinery::SchemaVersion`), spelled out here so the
/// linter does not depend on refinery; the tests check that the two stay the same type.
pub type SchemaVersion = i32;

/// The version refinery gives the migration file at `path` (`V7__x.sql` and `U7__x.sql`: 7), or
/// `None` for a file refinery does not load as a migration. Files run in this order, and the
/// baseline compares against it.
pub fn migration_version(path: &Path) -> Option<u64> {
    match classify(path.file_name()?) {
        Name::Migration { version, .. } => u64::try_from(version).ok(),
        _ => None,
    }
}

/// Naming findings for the files under the migrations directory `dir` (`files` is every file
/// found there, at any depth; files that are not `.sql` are ignored):
/// `migration-name-skipped` for a `.sql` file refinery would skip or fail to load, and
/// `duplicate-migration-version` on each file whose version an earlier file (in refinery's
/// order) already has. Findings come in refinery's order of the files.
pub fn check_names(dir: &Path, files: &[PathBuf]) -> Vec<(PathBuf, Finding)> {
    // refinery's order: the directory walk sorted by file name at each level (which is the
    // order of the relative paths, component by component), then a stable sort by version.
    let mut files: Vec<(&Path, &PathBuf)> = files
        .iter()
        .filter(|path| is_sql_file(path))
        .map(|path| (path.strip_prefix(dir).unwrap_or(path), path))
        .collect();
    files.sort();
    files.dedup();

    let versions = Versions::of(&files);
    let mut by_version: BTreeMap<SchemaVersion, Vec<Entry<'_>>> = BTreeMap::new();
    let mut findings: Vec<(&Path, &PathBuf, Finding)> = Vec::new();
    for &(relative, path) in &files {
        let Some(file_name) = path.file_name() else {
            continue;
        };
        match classify(file_name) {
            Name::Migration {
                prefix,
                version,
                name,
            } => by_version.entry(version).or_default().push(Entry {
                relative,
                path,
                prefix,
                version,
                name,
            }),
            other => findings.push((
                relative,
                path,
                skipped_finding(file_name, &other, &versions),
            )),
        }
    }
    for group in by_version.values() {
        if let [first, second, ..] = group.as_slice() {
            for (position, entry) in group.iter().enumerate().skip(1) {
                let finding = duplicate_finding(first, entry, position, second, versions.next_free);
                findings.push((entry.relative, entry.path, finding));
            }
        }
    }
    findings.sort_by(|a, b| a.0.cmp(b.0));
    findings
        .into_iter()
        .map(|(_, path, finding)| (path.clone(), finding))
        .collect()
}

fn is_sql_file(path: &Path) -> bool {
    path.extension()
        .and_then(OsStr::to_str)
        .is_some_and(|ext| ext.eq_ignore_ascii_case("sql"))
}

/// What refinery makes of a file name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Name {
    /// Loaded: `V` (versioned) or `U` (unversioned), the version and the name part.
    Migration {
        prefix: char,
        version: SchemaVersion,
        name: String,
    },
    /// Matches the pattern, but the version does not parse as a `SchemaVersion`: loading the
    /// directory fails with "migration version must be a valid integer".
    BadVersion { version: String },
    /// `|` in place of `U`/`V`: the loader reaches `unreachable!()` and panics.
    PipePrefix,
    /// Does not match the pattern (or is not UTF-8): refinery skips it.
    Skipped,
}

/// The parts of `^([U|V])(\d+(?:\.\d+)?)__(\w+)\.sql$`.
struct Parts<'a> {
    prefix: char,
    version: &'a str,
    name: &'a str,
}

fn classify(file_name: &OsStr) -> Name {
    // refinery skips names that are not UTF-8 (`to_str` returns `None`), without a log line.
    let Some(parts) = file_name.to_str().and_then(match_pattern) else {
        return Name::Skipped;
    };
    // refinery parses the version before it looks at the prefix, so `|1.5__x.sql` fails on its
    // version rather than panicking.
    let Ok(version) = parts.version.parse::<SchemaVersion>() else {
        return Name::BadVersion {
            version: parts.version.to_string(),
        };
    };
    if parts.prefix == '|' {
        return Name::PipePrefix;
    }
    Name::Migration {
        prefix: parts.prefix,
        version,
        name: parts.name.to_string(),
    }
}

/// Matches refinery's pattern. No backtracking is needed: the version's digits can only be
/// followed by `.` (a fraction) or `_`, and the name runs to the final `.sql` (`.` is not a word
/// character).
fn match_pattern(file_name: &str) -> Option<Parts<'_>> {
    let stem = file_name.strip_suffix(".sql")?;
    let prefix = stem
        .chars()
        .next()
        .filter(|c| matches!(c, 'U' | 'V' | '|'))?;
    let rest = &stem[prefix.len_utf8()..];
    let whole = digits_len(rest);
    if whole == 0 {
        return None;
    }
    let mut version_len = whole;
    if let Some(fraction) = rest[whole..].strip_prefix('.') {
        let fraction = digits_len(fraction);
        if fraction > 0 {
            version_len = whole + 1 + fraction;
        }
    }
    let name = rest[version_len..].strip_prefix("__")?;
    if name.is_empty() || !name.chars().all(is_word_char) {
        return None;
    }
    Some(Parts {
        prefix,
        version: &rest[..version_len],
        name,
    })
}

/// Bytes of the leading run of `\d` characters.
fn digits_len(text: &str) -> usize {
    text.char_indices()
        .find(|&(_, c)| !is_digit(c))
        .map_or(text.len(), |(i, _)| i)
}

/// Unicode `\w`, as refinery's regex has it.
fn is_word_char(c: char) -> bool {
    regex_syntax::try_is_word_character(c).unwrap_or(c == '_' || c.is_ascii_alphanumeric())
}

/// Unicode `\d` (general category Nd), as refinery's regex has it: `V١__x.sql` matches, and then
/// fails to parse as a number.
fn is_digit(c: char) -> bool {
    if c.is_ascii_digit() {
        return true;
    }
    if c.is_ascii() {
        return false;
    }
    static DIGITS: OnceLock<Vec<(char, char)>> = OnceLock::new();
    let ranges = DIGITS.get_or_init(|| {
        use regex_syntax::hir::{Class, HirKind};
        match regex_syntax::parse(r"\d").map(|hir| hir.into_kind()) {
            Ok(HirKind::Class(Class::Unicode(class))) => class
                .ranges()
                .iter()
                .map(|range| (range.start(), range.end()))
                .collect(),
            _ => Vec::new(),
        }
    });
    ranges
        .binary_search_by(|&(start, end)| {
            if end < c {
                std::cmp::Ordering::Less
            } else if start > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// The versions refinery loads from the directory, for suggestions that do not collide.
struct Versions {
    taken: BTreeSet<SchemaVersion>,
    /// One more than the highest version (1 when there is none).
    next_free: SchemaVersion,
}

impl Versions {
    fn of(files: &[(&Path, &PathBuf)]) -> Self {
        let taken: BTreeSet<SchemaVersion> = files
            .iter()
            .filter_map(|(_, path)| match classify(path.file_name()?) {
                Name::Migration { version, .. } => Some(version),
                _ => None,
            })
            .collect();
        let next_free = taken.last().map_or(1, |max| max.saturating_add(1));
        Versions { taken, next_free }
    }
}

const PATTERN: &str = "`V{version}__{name}.sql`";

fn skipped_finding(file_name: &OsStr, name: &Name, versions: &Versions) -> Finding {
    let display = file_name.to_string_lossy();
    let (message, help) = match name {
        Name::PipePrefix => (
            "refinery's loader panics on this name, so no migration runs: the `[U|V]` in its file-name pattern also admits `|`".to_string(),
            rename_help(&display, versions),
        ),
        Name::BadVersion { version } => {
            let why = if version.contains('.') {
                "has a fractional part".to_string()
            } else if !version.is_ascii() {
                "is written with non-ASCII digits".to_string()
            } else {
                format!("is larger than {}, refinery's largest version", SchemaVersion::MAX)
            };
            (
                format!(
                    "refinery cannot load the migrations directory, so no migration runs: the version `{version}` {why} (\"migration version must be a valid integer\")"
                ),
                rename_help(&display, versions),
            )
        }
        Name::Skipped if file_name.to_str().is_none() => (
            "refinery skips this file without running it: its name is not valid UTF-8".to_string(),
            rename_help(&display, versions),
        ),
        Name::Skipped | Name::Migration { .. } => (
            format!(
                "refinery skips this file without running it (with only a log line): its name does not match {PATTERN}"
            ),
            rename_help(&display, versions),
        ),
    };
    Finding::file(RuleId::MigrationNameSkipped, message, help)
}

fn rename_help(file_name: &str, versions: &Versions) -> String {
    match suggest_name(file_name, versions) {
        Suggestion::Rename(name) => format!("rename it to `{name}`"),
        Suggestion::Renumber(name) => format!(
            "give it a whole version of its own, in the order it must run, such as the next free one: `{name}` (versions are integers up to {})",
            SchemaVersion::MAX
        ),
        Suggestion::AddName { prefix, version } => format!(
            "add a name of letters, digits and `_` after the version: `{prefix}{version}__describe_the_change.sql`"
        ),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Suggestion {
    /// The name with its prefix, separator, name characters and extension repaired.
    Rename(String),
    /// The file's version is unusable (absent, fractional, too large, another file's): the next
    /// free version.
    Renumber(String),
    /// Nothing is left to make a name from.
    AddName { prefix: char, version: String },
}

/// The name refinery would load that is closest to `file_name`: `v1_create-users.SQL` ->
/// `V1__create_users.sql`. A file without a usable version gets the next free one.
fn suggest_name(file_name: &str, versions: &Versions) -> Suggestion {
    let stem = match file_name.len().checked_sub(4) {
        Some(dot)
            if file_name.is_char_boundary(dot) && file_name[dot..].eq_ignore_ascii_case(".sql") =>
        {
            &file_name[..dot]
        }
        _ => file_name,
    };
    let mut prefix = 'V';
    let mut rest = stem;
    let mut chars = stem.chars();
    if let (Some(first), Some(second)) = (chars.next(), chars.next())
        && matches!(first, 'V' | 'v' | 'U' | 'u' | '|')
        && second.is_ascii_digit()
    {
        prefix = if first.eq_ignore_ascii_case(&'u') {
            'U'
        } else {
            'V'
        };
        rest = &stem[first.len_utf8()..];
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let mut version = rest[..digits].to_string();
    let mut rest = &rest[digits..];
    let fractional = rest.starts_with('.') && rest[1..].starts_with(|c: char| c.is_ascii_digit());
    let mut renumbered = false;
    if fractional {
        let fraction = 1 + rest[1..].bytes().take_while(u8::is_ascii_digit).count();
        rest = &rest[fraction..];
    }
    let usable = version
        .parse::<SchemaVersion>()
        .is_ok_and(|v| !versions.taken.contains(&v));
    if fractional || !usable {
        version = versions.next_free.to_string();
        renumbered = true;
    }
    let name = rest
        .split(|c: char| !is_word_char(c))
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    // The separator `__` is added back; underscores the name kept at its start would only
    // lengthen it.
    let name = name.trim_start_matches('_');
    if name.is_empty() {
        return Suggestion::AddName { prefix, version };
    }
    let suggestion = format!("{prefix}{version}__{name}.sql");
    if renumbered {
        Suggestion::Renumber(suggestion)
    } else {
        Suggestion::Rename(suggestion)
    }
}

/// A file refinery loads as a migration.
struct Entry<'a> {
    /// Relative to the migrations directory: what messages name.
    relative: &'a Path,
    path: &'a PathBuf,
    prefix: char,
    version: SchemaVersion,
    name: String,
}

impl Entry<'_> {
    /// How refinery prints it (`V1__name`: no leading zeros).
    fn migration(&self) -> String {
        format!("{}{}__{}", self.prefix, self.version, self.name)
    }

    /// How refinery prints it once read back from its schema history: always `V`.
    fn applied(&self) -> String {
        format!("V{}__{}", self.version, self.name)
    }
}

/// The finding on `this`, the file at `position` (1 or more) among the files with its version;
/// `first` and `second` are the files at positions 0 and 1.
fn duplicate_finding(
    first: &Entry<'_>,
    this: &Entry<'_>,
    position: usize,
    second: &Entry<'_>,
    next_free: SchemaVersion,
) -> Finding {
    let version = this.version;
    let first_path = first.relative.display();
    // refinery's migrations are equal when version, name and checksum (of name, version and
    // SQL) are: such a copy is caught before anything runs.
    let same = first.name == this.name
        && matches!((std::fs::read(first.path), std::fs::read(this.path)), (Ok(a), Ok(b)) if a == b);
    if same {
        return Finding::file(
            RuleId::DuplicateMigrationVersion,
            format!(
                "this file repeats `{first_path}` (same version, name and content): wherever version {version} is not applied yet, refinery refuses to run any migration (\"migration {} is repeated, migration versions must be unique\")",
                this.migration()
            ),
            "delete one of the two copies",
        );
    }
    let fresh = if position == 1 {
        format!(
            "on a fresh database refinery runs `{first_path}`, then runs this file's SQL too and fails to record it (version {version} is the schema history's primary key)"
        )
    } else {
        format!(
            "on a fresh database refinery fails on `{}`, another file with version {version}, before it reaches this one",
            second.relative.display()
        )
    };
    Finding::file(
        RuleId::DuplicateMigrationVersion,
        format!(
            "version {version} is also the version of `{first_path}`, which refinery orders first: refinery never applies both, and once `{first_path}` is recorded it skips this file without a word"
        ),
        format!(
            "give the newer of the two files a version of its own, such as the next free one (`{}{next_free}__{}.sql` for this file); a file already applied somewhere keeps its version",
            this.prefix, this.name
        ),
    )
    .with_note(format!(
        "{fresh}; where this file is the one recorded, refinery fails with \"applied migration {} is different than filesystem one {}\"",
        this.applied(),
        first.migration()
    ))
}

#[cfg(test)]
mod tests;
