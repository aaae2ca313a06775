//! Which files of the migrations directory the configured tool runs, with what version, in which
//! order, and inside a transaction or not. refinery's rules are in [`super::naming`]; sqlx's and
//! diesel's are here, as their loaders implement them:
//!
//! - sqlx (`sqlx-core`, `migrate/source.rs`): the files at the top level of the directory named
//!   `{VERSION}_{DESCRIPTION}.sql`; `VERSION` must parse as an `i64` (any other prefix before the
//!   first `_` fails the whole directory's loading), and is positive by convention. A name ending
//!   `.up.sql` or `.down.sql` is one half of a reversible migration; the others are simple ones.
//!   A file whose text starts with `-- no-transaction` runs outside a transaction. Other files
//!   (no `_`, not `.sql`, in a subdirectory) are ignored.
//! - diesel (`diesel_migrations`): one directory per migration, `{VERSION}_{NAME}/`, holding
//!   `up.sql` and `down.sql` (and optionally `metadata.toml`, whose `run_in_transaction = false`
//!   runs it outside a transaction). The version is the directory name up to its first `_`
//!   without its dashes (`2024-01-31-120000_x` is `20240131120000`); diesel stores it as text,
//!   the linter needs digits to order and compare it. Directories starting with `.` are ignored;
//!   SQL files elsewhere are never run.
//!
//! Down migrations are linted like up migrations (they run on production when a deploy is rolled
//! back), with the schema their up migration built; what they undo is not applied to the schema
//! later files see.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::{Finding, RuleId};
use crate::config::MigrationLayout;

/// Which half of a migration a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// What runs forward (refinery's files, sqlx's simple and `.up.sql`, diesel's `up.sql`).
    Up,
    /// What a rollback runs.
    Down,
}

/// A migration file as its tool loads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    pub version: u64,
    pub role: Role,
}

/// What `layout`'s tool makes of the file at `path`; `Err` says why the tool does not run it.
/// Only the file name (and, for diesel, its directory's name) is read; where the file lies
/// inside the migrations directory is [`check_names`]'s concern.
pub fn classify(layout: MigrationLayout, path: &Path) -> Result<Loaded, String> {
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("the file name is not UTF-8")?;
    match layout {
        MigrationLayout::Refinery => super::naming::migration_version(path)
            .map(|version| Loaded {
                version,
                role: Role::Up,
            })
            .ok_or_else(|| "refinery does not load it as a migration".to_string()),
        MigrationLayout::Sqlx => {
            let Some((version, rest)) = file_name.split_once('_') else {
                return Err(
                    "sqlx runs files named {VERSION}_{DESCRIPTION}.sql and ignores this one (no `_`)"
                        .into(),
                );
            };
            if !rest.ends_with(".sql") {
                return Err("sqlx runs only `.sql` files".into());
            }
            let version: i64 = version.parse().map_err(|_| {
                format!(
                    "`{version}` before the first `_` is not an integer version: sqlx fails to load the migrations directory"
                )
            })?;
            let version = u64::try_from(version)
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| format!("the version {version} is not positive"))?;
            let role = if rest.ends_with(".down.sql") {
                Role::Down
            } else {
                Role::Up
            };
            Ok(Loaded { version, role })
        }
        MigrationLayout::Diesel => {
            let role = match file_name {
                "up.sql" => Role::Up,
                "down.sql" => Role::Down,
                _ => {
                    return Err(
                        "diesel runs only `up.sql` and `down.sql` in a migration's directory"
                            .into(),
                    );
                }
            };
            let dir = path
                .parent()
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str())
                .unwrap_or("");
            let digits: String = dir.split('_').next().unwrap_or("").replace('-', "");
            let version = (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| digits.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| {
                    format!(
                        "the directory `{dir}` does not start with a version ({{VERSION}}_{{NAME}}, e.g. 2024-01-31-120000_add_users)"
                    )
                })?;
            Ok(Loaded { version, role })
        }
    }
}

/// The version `layout`'s tool gives the file at `path`, if it runs it.
pub fn version(layout: MigrationLayout, path: &Path) -> Option<u64> {
    classify(layout, path).ok().map(|l| l.version)
}

/// Whether the file at `path` is a down migration.
pub fn is_down(layout: MigrationLayout, path: &Path) -> bool {
    classify(layout, path).is_ok_and(|l| l.role == Role::Down)
}

/// The order files run in: version, up before down, then path; files the tool does not run last.
pub fn order_key(layout: MigrationLayout, path: &Path) -> (u64, Role, PathBuf) {
    match classify(layout, path) {
        Ok(l) => (l.version, l.role, path.to_path_buf()),
        Err(_) => (u64::MAX, Role::Up, path.to_path_buf()),
    }
}

/// Whether the tool runs the file outside a transaction by its own convention: sqlx's
/// `-- no-transaction` first line, diesel's `run_in_transaction = false` in `metadata.toml`.
/// (refinery has none; `-- migrate: no-transaction` is read for every layout.)
pub fn runs_outside_transaction(layout: MigrationLayout, path: &Path, text: &str) -> bool {
    match layout {
        MigrationLayout::Refinery => false,
        MigrationLayout::Sqlx => text.starts_with("-- no-transaction"),
        MigrationLayout::Diesel => {
            let Some(metadata) = path.parent().map(|d| d.join("metadata.toml")) else {
                return false;
            };
            let Ok(text) = std::fs::read_to_string(metadata) else {
                return false;
            };
            text.parse::<toml::Table>()
                .ok()
                .and_then(|t| t.get("run_in_transaction").and_then(|v| v.as_bool()))
                == Some(false)
        }
    }
}

/// Naming findings for the files under the migrations directory `dir` (every file found there,
/// at any depth): `migration-name-skipped` for a `.sql` file the tool never runs or fails on,
/// `duplicate-migration-version` for a second file with the same version and role.
pub fn check_names(
    layout: MigrationLayout,
    dir: &Path,
    files: &[PathBuf],
) -> Vec<(PathBuf, Finding)> {
    if layout == MigrationLayout::Refinery {
        return super::naming::check_names(dir, files);
    }
    let mut files: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("sql")))
        .collect();
    files.sort();
    files.dedup();
    let tool = layout.name();
    let mut findings = Vec::new();
    let mut seen: BTreeMap<(u64, Role), &PathBuf> = BTreeMap::new();
    for path in files {
        let relative = path.strip_prefix(dir).unwrap_or(path);
        let depth = relative
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .count();
        let placed = match layout {
            MigrationLayout::Sqlx if depth != 1 => Err(
                "sqlx reads only the top level of the migrations directory: it never runs this file"
                    .to_string(),
            ),
            MigrationLayout::Diesel if depth != 2 => Err(
                "diesel runs `up.sql` and `down.sql` from one directory per migration ({VERSION}_{NAME}/up.sql): it never runs this file"
                    .to_string(),
            ),
            MigrationLayout::Diesel
                if relative
                    .components()
                    .next()
                    .is_some_and(|c| c.as_os_str().to_string_lossy().starts_with('.')) =>
            {
                Err("diesel ignores directories whose name starts with `.`".to_string())
            }
            _ => classify(layout, path),
        };
        match placed {
            Err(reason) => findings.push((
                path.clone(),
                Finding::file(
                    RuleId::MigrationNameSkipped,
                    format!("{tool} does not run this file: {reason}"),
                    format!(
                        "name it as {tool} expects ({}), or move it out of the migrations directory",
                        expected(layout)
                    ),
                ),
            )),
            Ok(loaded) => {
                if let Some(first) = seen.get(&(loaded.version, loaded.role)) {
                    findings.push((
                        path.clone(),
                        Finding::file(
                            RuleId::DuplicateMigrationVersion,
                            format!(
                                "version {} is also the version of {}: {tool} refuses two migrations with one version",
                                loaded.version,
                                first.strip_prefix(dir).unwrap_or(first).display()
                            ),
                            "give this migration the next free version".to_string(),
                        ),
                    ));
                } else {
                    seen.insert((loaded.version, loaded.role), path);
                }
            }
        }
    }
    findings
}

fn expected(layout: MigrationLayout) -> &'static str {
    match layout {
        MigrationLayout::Refinery => "V{VERSION}__{NAME}.sql",
        MigrationLayout::Sqlx => "{VERSION}_{DESCRIPTION}.sql or .up.sql/.down.sql",
        MigrationLayout::Diesel => "{VERSION}_{NAME}/up.sql and down.sql",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(layout: MigrationLayout, path: &str) -> Result<(u64, Role), String> {
        classify(layout, Path::new(path)).map(|l| (l.version, l.role))
    }

    #[test]
    fn sqlx_names() {
        let sqlx = MigrationLayout::Sqlx;
        assert_eq!(
            loaded(sqlx, "m/20240131120000_add_users.sql"),
            Ok((20240131120000, Role::Up))
        );
        assert_eq!(loaded(sqlx, "m/0002_add_x.up.sql"), Ok((2, Role::Up)));
        assert_eq!(loaded(sqlx, "m/0002_add_x.down.sql"), Ok((2, Role::Down)));
        assert!(loaded(sqlx, "m/README.sql").unwrap_err().contains("no `_`"));
        assert!(
            loaded(sqlx, "m/v2_add.sql")
                .unwrap_err()
                .contains("sqlx fails to load")
        );
        assert!(
            loaded(sqlx, "m/0_add.sql")
                .unwrap_err()
                .contains("not positive")
        );
        assert!(loaded(sqlx, "m/1_add.txt").is_err());
        assert_eq!(
            version(MigrationLayout::Refinery, Path::new("V3__x.sql")),
            Some(3)
        );
        assert_eq!(
            version(MigrationLayout::Refinery, Path::new("3_x.sql")),
            None
        );
    }

    #[test]
    fn diesel_names() {
        let diesel = MigrationLayout::Diesel;
        assert_eq!(
            loaded(diesel, "m/2024-01-31-120000_add_users/up.sql"),
            Ok((20240131120000, Role::Up))
        );
        assert_eq!(
            loaded(diesel, "m/00000000000000_diesel_initial_setup/down.sql"),
            Ok((0, Role::Down))
        );
        assert!(
            loaded(diesel, "m/2024_x/seed.sql")
                .unwrap_err()
                .contains("only `up.sql`")
        );
        assert!(
            loaded(diesel, "m/add_users/up.sql")
                .unwrap_err()
                .contains("does not start with a version")
        );
    }

    #[test]
    fn order_is_version_then_up_before_down() {
        let mut files = vec![
            PathBuf::from("m/2_b.down.sql"),
            PathBuf::from("m/10_c.sql"),
            PathBuf::from("m/2_b.up.sql"),
            PathBuf::from("m/1_a.sql"),
        ];
        files.sort_by_key(|p| order_key(MigrationLayout::Sqlx, p));
        assert_eq!(
            files,
            ["m/1_a.sql", "m/2_b.up.sql", "m/2_b.down.sql", "m/10_c.sql"].map(PathBuf::from)
        );
    }

    #[test]
    fn outside_a_transaction_by_each_tool_s_convention() {
        let dir = tempfile::tempdir().unwrap();
        let up = dir.path().join("2024-01-01-000000_idx/up.sql");
        std::fs::create_dir_all(up.parent().unwrap()).unwrap();
        assert!(!runs_outside_transaction(MigrationLayout::Diesel, &up, ""));
        std::fs::write(
            up.with_file_name("metadata.toml"),
            "run_in_transaction = false\n",
        )
        .unwrap();
        assert!(runs_outside_transaction(MigrationLayout::Diesel, &up, ""));
        assert!(runs_outside_transaction(
            MigrationLayout::Sqlx,
            Path::new("1_x.sql"),
            "-- no-transaction\nCREATE INDEX CONCURRENTLY i ON t (c);"
        ));
        assert!(!runs_outside_transaction(
            MigrationLayout::Sqlx,
            Path::new("1_x.sql"),
            "CREATE INDEX CONCURRENTLY i ON t (c);\n-- no-transaction"
        ));
    }

    #[test]
    fn naming_findings_per_layout() {
        let dir = Path::new("m");
        let files: Vec<PathBuf> = [
            "m/1_users.sql",
            "m/1_again.sql",
            "m/2_x.up.sql",
            "m/2_x.down.sql",
            "m/notes.sql",
            "m/sub/3_y.sql",
        ]
        .map(PathBuf::from)
        .to_vec();
        let found: Vec<(String, RuleId)> = check_names(MigrationLayout::Sqlx, dir, &files)
            .into_iter()
            .map(|(p, f)| (p.display().to_string(), f.rule))
            .collect();
        assert_eq!(
            found,
            vec![
                (
                    "m/1_users.sql".to_string(),
                    RuleId::DuplicateMigrationVersion
                ),
                ("m/notes.sql".to_string(), RuleId::MigrationNameSkipped),
                ("m/sub/3_y.sql".to_string(), RuleId::MigrationNameSkipped),
            ]
        );

        let files: Vec<PathBuf> = [
            "m/2024-01-01-000000_users/up.sql",
            "m/2024-01-01-000000_users/down.sql",
            "m/seed.sql",
            "m/.git_x/up.sql",
        ]
        .map(PathBuf::from)
        .to_vec();
        let found: Vec<String> = check_names(MigrationLayout::Diesel, dir, &files)
            .into_iter()
            .map(|(p, _)| p.display().to_string())
            .collect();
        assert_eq!(found, vec!["m/.git_x/up.sql", "m/seed.sql"]);
    }
}
