//! `backfill sample` and `backfill status` end to end on SQLite: this repository's own data
//! migrations (what CI gates on), and throwaway workspaces for every way a sample can fail.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use xtask_migrate::backfill::migration;
use xtask_migrate::backfill::sample::engine::Engine;
use xtask_migrate::backfill::sample::snapshot::{Mode, Outcome};
use xtask_migrate::backfill::sample::{self, Inputs, SampleOptions};
use xtask_migrate::cli::backfill::{SampleArgs, StatusArgs};
use xtask_migrate::config::{Config, SampleEngine};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check_args(name: Option<&str>) -> SampleArgs {
    SampleArgs {
        name: name.map(String::from),
        check: true,
        batch_size: None,
        engine: None,
        database_url: None,
        keep_alive: None,
    }
}

/// The gate: `cargo test` fails when an example data migration's result, or the file itself,
/// no longer matches its accepted snapshot.
#[test]
fn this_repository_s_data_migrations_match_their_snapshots() {
    let config = Config::discover().unwrap();
    let mut out = Vec::new();
    let code = check_args(None).run_to(&config, &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert!(out.contains("V1__backfill_counter_caches"), "{out}");
    assert!(out.contains("rows match, approved"), "{out}");
    for stage in [
        "schema", "fixtures", "backfill", "checks", "verify", "snapshot",
    ] {
        assert!(
            out.contains(&format!("  {stage} ")),
            "stage {stage} is printed: {out}"
        );
    }
    assert!(out.contains("rows/s"), "{out}");
    // The verification (`-- @expected` against `-- @actual`) finds nothing on an approved one.
    assert!(out.contains("2,500 rows compared, no differences"), "{out}");
}

#[test]
fn this_repository_s_data_migrations_are_approved() {
    let config = Config::discover().unwrap();
    let mut out = Vec::new();
    StatusArgs::default().run_to(&config, &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(
        out.trim(),
        "V1__backfill_counter_caches  approved\n  holds back V5__index_users_by_followers (`-- migrate: after-backfill`) until done"
    );
}

/// The status line of the first data migration (the lines under it say what it holds back).
fn first_line(status: &str) -> &str {
    status.lines().next().unwrap_or("").trim_end()
}

/// A copy of this repository's schema, example data migration and fixtures in a temp dir.
struct Workspace {
    dir: tempfile::TempDir,
    config: Config,
}

impl Workspace {
    fn new() -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["migrations", "data-migrations", "fixtures"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
            for entry in std::fs::read_dir(repo().join(sub)).unwrap() {
                let path = entry.unwrap().path();
                if path.is_file() {
                    std::fs::copy(&path, dir.path().join(sub).join(path.file_name().unwrap()))
                        .unwrap();
                }
            }
        }
        // These tests are about SQLite; the same workspace on PostgreSQL is in backfill_pg_local.rs.
        let mut config = Config::defaults(dir.path());
        config.sample_engine = SampleEngine::Sqlite;
        Workspace { dir, config }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn write(&self, relative: &str, text: &str) {
        std::fs::write(self.path(relative), text).unwrap();
    }

    fn edit(&self, relative: &str, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.path(relative)).unwrap();
        assert!(text.contains(from), "{relative} lacks {from:?}");
        self.write(relative, &text.replacen(from, to, 1));
    }

    fn snapshot_files(&self) -> Vec<String> {
        let dir = self.path("data-migrations/snapshots");
        let mut names: Vec<String> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }

    /// Samples `V1` with an explicit mode (not the environment's), printing to a string.
    fn sample(
        &self,
        mode: Mode,
    ) -> (
        xtask_migrate::backfill::Result<sample::SampleReport>,
        String,
    ) {
        let migration = migration::find(&self.config.data_migrations, "V1").unwrap();
        let inputs = Inputs::load(&self.config).unwrap();
        let options = SampleOptions {
            batch_size: None,
            mode,
        };
        let mut out = Vec::new();
        let report = sample::sample(
            &self.config,
            &inputs,
            &migration,
            &mut Engine::Sqlite,
            &options,
            &mut out,
        );
        (report, String::from_utf8(out).unwrap())
    }

    fn check(&self) -> (anyhow::Result<ExitCode>, String) {
        let mut out = Vec::new();
        let code = check_args(None).run_to(&self.config, &mut out);
        (code, String::from_utf8(out).unwrap())
    }

    fn status(&self) -> String {
        let mut out = Vec::new();
        StatusArgs::default()
            .run_to(&self.config, &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The workspace with its snapshot accepted, as a fresh clone of a repository has it.
    fn accepted() -> Workspace {
        let ws = Workspace::new();
        let (report, out) = ws.sample(Mode::Accept);
        assert!(report.unwrap().passed(), "{out}");
        assert_eq!(
            ws.snapshot_files(),
            vec!["V1__backfill_counter_caches.snap"]
        );
        ws
    }
}

/// Runs `f`, and asserts that it errs with one line that starts with `prefix` and contains
/// `needle`, and that no snapshot file was written.
#[track_caller]
fn assert_input_error(ws: &Workspace, prefix: &str, needle: &str) {
    let (result, out) = ws.check();
    let error = match result {
        Ok(code) => panic!("expected an error, got {code:?}: {out}"),
        Err(e) => e.to_string(),
    };
    let prefix = ws.path(prefix).display().to_string();
    assert!(
        error.starts_with(&prefix),
        "`{error}` should start with `{prefix}`"
    );
    assert!(
        error.contains(needle),
        "`{error}` should contain `{needle}`"
    );
    assert!(!error.contains('\n'), "one line: {error}");
    assert_eq!(ws.snapshot_files(), Vec::<String>::new(), "nothing written");
}

#[test]
fn accepting_then_checking_passes() {
    let ws = Workspace::accepted();
    let (code, out) = ws.check();
    assert_eq!(code.unwrap(), ExitCode::SUCCESS, "{out}");
    assert_eq!(
        first_line(&ws.status()),
        "V1__backfill_counter_caches  approved"
    );
}

#[test]
fn check_fails_on_a_changed_result_prints_the_diff_and_writes_nothing() {
    let ws = Workspace::accepted();
    let before =
        std::fs::read(ws.path("data-migrations/snapshots/V1__backfill_counter_caches.snap"))
            .unwrap();
    // One more follow of user 2 by user 3: followers of the first block change by one.
    ws.edit(
        "fixtures/follows.csv",
        "3,1304,",
        "3,2,2024-01-01 00:00:00\n3,1304,",
    );
    let (code, out) = ws.check();
    assert_eq!(code.unwrap(), ExitCode::from(1), "{out}");
    assert!(out.contains("snapshot  DIFFERS"), "{out}");
    assert!(out.contains("-0 | 83 | 1070 |"), "{out}");
    assert!(out.contains("+0 | 83 | 1071 |"), "{out}");
    assert!(out.contains("0 passed, 1 failed"), "{out}");
    assert_eq!(
        ws.snapshot_files(),
        vec!["V1__backfill_counter_caches.snap"],
        "no .snap.new in --check"
    );
    let after =
        std::fs::read(ws.path("data-migrations/snapshots/V1__backfill_counter_caches.snap"))
            .unwrap();
    assert_eq!(before, after);
}

#[test]
fn default_mode_writes_a_snap_new_for_review() {
    let ws = Workspace::accepted();
    ws.edit(
        "fixtures/posts.csv",
        "1006,3464,",
        "1005,2,one more post,2024-01-01 00:00:00\n1006,3464,",
    );
    let (report, out) = ws.sample(Mode::Review);
    let report = report.unwrap();
    assert!(!report.passed(), "{out}");
    let Outcome::Pending { path, diff, .. } = &report.outcome else {
        panic!("{:?}", report.outcome)
    };
    assert_eq!(
        path,
        &ws.path("data-migrations/snapshots/V1__backfill_counter_caches.snap.new")
    );
    assert!(
        diff.contains("+0 | 83 | 1070 | 29 | 238 | 11 | 577 | 16"),
        "{diff}"
    );
    assert_eq!(
        ws.snapshot_files(),
        vec![
            "V1__backfill_counter_caches.snap",
            "V1__backfill_counter_caches.snap.new"
        ]
    );
    assert!(
        ws.status()
            .contains("approved, a new snapshot awaits `cargo insta review`"),
        "{}",
        ws.status()
    );
    // Accepting (what `cargo insta accept` does) makes --check pass on the new data.
    std::fs::rename(
        path,
        ws.path("data-migrations/snapshots/V1__backfill_counter_caches.snap"),
    )
    .unwrap();
    let (code, out) = ws.check();
    assert_eq!(code.unwrap(), ExitCode::SUCCESS, "{out}");
}

#[test]
fn a_changed_data_migration_makes_its_snapshot_stale() {
    let ws = Workspace::accepted();
    ws.edit(
        "data-migrations/V1__backfill_counter_caches.sql",
        "-- @batch-size 500",
        "-- @batch-size 400",
    );
    let status = ws.status();
    assert!(
        status.starts_with("V1__backfill_counter_caches  snapshot stale (taken from checksum "),
        "{status}"
    );
    let (code, out) = ws.check();
    assert_eq!(code.unwrap(), ExitCode::from(1), "{out}");
    assert!(
        out.contains("the rows match, but the snapshot was taken from another version of the file"),
        "{out}"
    );
    // Re-accepting approves the new version.
    let (report, out) = ws.sample(Mode::Accept);
    assert!(report.unwrap().passed(), "{out}");
    assert_eq!(
        first_line(&ws.status()),
        "V1__backfill_counter_caches  approved"
    );
}

#[test]
fn no_snapshot_yet() {
    let ws = Workspace::new();
    assert_eq!(
        first_line(&ws.status()),
        "V1__backfill_counter_caches  no snapshot"
    );
    let (code, out) = ws.check();
    assert_eq!(code.unwrap(), ExitCode::from(1), "{out}");
    assert!(out.contains("no accepted snapshot at"), "{out}");
    assert_eq!(ws.snapshot_files(), Vec::<String>::new());
}

#[test]
fn a_failing_check_prints_the_first_offending_rows() {
    let ws = Workspace::accepted();
    // The classic bug: followers and following swapped.
    ws.edit(
        "data-migrations/V1__backfill_counter_caches.sql",
        "SET followers_count = (SELECT count(*) FROM follows WHERE follows.followee_id = users.id)",
        "SET followers_count = (SELECT count(*) FROM follows WHERE follows.follower_id = users.id)",
    );
    let (code, out) = ws.check();
    assert_eq!(code.unwrap(), ExitCode::from(1), "{out}");
    assert!(out.contains("checks    1 of 3 FAILED"), "{out}");
    // The verification finds the same mistake, per key, naming the column.
    assert!(
        out.contains("  verify    2,146 differences in 2,500 rows"),
        "{out}"
    );
    assert!(
        out.contains("V1__backfill_counter_caches.sql:52): 2,146 differences in 2,500 rows\n    value key 1: followers_count; expected [1 | 28 | 0 | 15]; actual [1 | 0 | 0 | 15]\n"),
        "{out}"
    );
    let header = "check failed: every user's followers_count equals the follows pointing at them (";
    let at = out.find(header).unwrap_or_else(|| panic!("{out}"));
    let block: Vec<&str> = out[at..].lines().collect();
    assert!(
        block[0].contains("V1__backfill_counter_caches.sql:20): "),
        "{}",
        block[0]
    );
    assert!(
        block[0].contains("offending rows, the first 5"),
        "{}",
        block[0]
    );
    assert_eq!(block[1].trim(), "id | followers_count | actual");
    assert_eq!(
        block
            .iter()
            .skip(2)
            .take_while(|l| l.starts_with("    "))
            .count(),
        5,
        "{out}"
    );
}

#[test]
fn a_statement_error_names_the_data_migration_file_and_line() {
    let ws = Workspace::accepted();
    ws.edit(
        "data-migrations/V1__backfill_counter_caches.sql",
        "posts_count = (SELECT",
        "post_count = (SELECT",
    );
    assert_input_error_keeping_snapshot(
        &ws,
        "data-migrations/V1__backfill_counter_caches.sql:13: batch of range 0 failed: keys (0, ",
        "post_count",
    );
}

#[track_caller]
fn assert_input_error_keeping_snapshot(ws: &Workspace, prefix: &str, needle: &str) {
    let before = ws.snapshot_files();
    let (result, out) = ws.check();
    let error = result
        .err()
        .unwrap_or_else(|| panic!("expected an error: {out}"))
        .to_string();
    let prefix = ws.path(prefix).display().to_string();
    assert!(
        error.starts_with(&prefix),
        "`{error}` should start with `{prefix}`"
    );
    assert!(
        error.contains(needle),
        "`{error}` should contain `{needle}`"
    );
    assert_eq!(ws.snapshot_files(), before);
}

#[test]
fn a_malformed_fixture_names_file_and_line() {
    let ws = Workspace::new();
    ws.edit("fixtures/users.csv", "3,user3,User 3,", "3,user3,");
    assert_input_error(
        &ws,
        "fixtures/users.csv:4: ",
        "this row has 3 fields, the header has 4",
    );
}

#[test]
fn a_fixture_value_that_does_not_convert() {
    let ws = Workspace::new();
    ws.edit("fixtures/posts.csv", "1003,6662,", "1003,six,");
    assert_input_error(
        &ws,
        "fixtures/posts.csv:2: ",
        "column `author_id`: `six` is not an integer",
    );
}

#[test]
fn a_fixture_column_the_schema_lacks() {
    let ws = Workspace::new();
    ws.edit(
        "fixtures/users.csv",
        "id,handle,display_name,created_at",
        "id,handle,display_name,created",
    );
    assert_input_error(
        &ws,
        "fixtures/users.csv:1: ",
        "column `created` is not in table `users` at schema version 4",
    );
}

#[test]
fn a_fixture_row_the_database_refuses() {
    let ws = Workspace::new();
    // follows.csv line 2 follows a user that does not exist.
    ws.edit("fixtures/follows.csv", "2,7155,", "2,7154,");
    assert_input_error(
        &ws,
        "fixtures/follows.csv:2: ",
        "FOREIGN KEY constraint failed",
    );
}

#[test]
fn a_data_migration_that_names_a_missing_version() {
    let ws = Workspace::new();
    ws.edit(
        "data-migrations/V1__backfill_counter_caches.sql",
        "-- @requires 4",
        "-- @requires 9",
    );
    assert_input_error(
        &ws,
        "data-migrations/V1__backfill_counter_caches.sql:6: ",
        "has no migration V9 (it has: V1, V2, V3, V4, V5)",
    );
}

#[test]
fn a_data_migration_that_needs_a_column_of_a_later_version() {
    let ws = Workspace::new();
    ws.edit(
        "data-migrations/V1__backfill_counter_caches.sql",
        "-- @requires 4",
        "-- @requires 3",
    );
    assert_input_error(
        &ws,
        "data-migrations/V1__backfill_counter_caches.sql:13: batch of range 0 failed: keys (0, ",
        "followers_count",
    );
}

#[test]
fn a_data_migration_that_names_a_missing_table() {
    let ws = Workspace::new();
    ws.edit(
        "data-migrations/V1__backfill_counter_caches.sql",
        "-- @table users",
        "-- @table members",
    );
    ws.edit(
        "data-migrations/V1__backfill_counter_caches.sql",
        "UPDATE users\n",
        "UPDATE members\n",
    );
    assert_input_error(
        &ws,
        "data-migrations/V1__backfill_counter_caches.sql:7: ",
        "table `members` does not exist in the schema at version 4",
    );
}

#[test]
fn a_data_migration_that_names_a_missing_key() {
    let ws = Workspace::new();
    ws.edit(
        "data-migrations/V1__backfill_counter_caches.sql",
        "-- @key id",
        "-- @key user_id",
    );
    ws.edit(
        "data-migrations/V1__backfill_counter_caches.sql",
        "WHERE id > :lower AND id <= :upper",
        "WHERE user_id > :lower AND user_id <= :upper",
    );
    assert_input_error(
        &ws,
        "data-migrations/V1__backfill_counter_caches.sql:8: ",
        "table `users` has no column `user_id`",
    );
}

#[test]
fn a_non_deterministic_snapshot_query() {
    let ws = Workspace::new();
    ws.edit(
        "data-migrations/V1__backfill_counter_caches.sql",
        "GROUP BY id / 1000\nORDER BY first_id",
        "GROUP BY id / 1000",
    );
    assert_input_error(
        &ws,
        "data-migrations/V1__backfill_counter_caches.sql:40: ",
        "row order is not deterministic",
    );
}

#[test]
fn a_broken_schema_migration_names_its_file_and_line() {
    let ws = Workspace::new();
    ws.edit(
        "migrations/V3__create_posts.sql",
        "body text NOT NULL,",
        "body text NOT NULL,,",
    );
    assert_input_error(&ws, "migrations/V3__create_posts.sql:7: ", "syntax error");
}

#[test]
fn batch_size_one_and_the_data_migration_s_own_size_give_the_same_snapshot() {
    let ws = Workspace::accepted();
    // 100,000 rows per batch: the whole table in `1 batch`.
    for batch_size in [1, 7, 500, 100_000] {
        let mut args = check_args(None);
        args.batch_size = Some(batch_size);
        let mut out = Vec::new();
        let code = args.run_to(&ws.config, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(code, ExitCode::SUCCESS, "{out}");
        let batches = 2500u64.div_ceil(batch_size);
        assert!(
            out.contains(&format!(
                "{} of {batch_size},",
                xtask_migrate::backfill::display::count(batches, "batch", "batches")
            )),
            "{out}"
        );
    }
}

#[test]
fn unknown_name() {
    let ws = Workspace::new();
    let mut out = Vec::new();
    let e = check_args(Some("V7"))
        .run_to(&ws.config, &mut out)
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with(
            "data-migrations: no data migration named `V7` (found: V1__backfill_counter_caches)"
        ),
        "{e}"
    );
    assert!(Path::new(&ws.config.data_migrations).exists());
}

/// Runs the real binary's `backfill sample ARGS` in the workspace, with insta's settings from
/// `insta_update` only (not the test's environment); `(exit code, stdout with the timings cut)`.
fn sample_cli(ws: &Workspace, args: &[&str], insta_update: Option<&str>) -> (Option<i32>, String) {
    let mut command = std::process::Command::new(crate::support::bin());
    command
        .current_dir(ws.dir.path())
        .args(["backfill", "sample", "--engine", "sqlite"])
        .args(args)
        .env_remove("CI")
        .env_remove("TF_BUILD")
        .env_remove("INSTA_UPDATE");
    if let Some(value) = insta_update {
        command.env("INSTA_UPDATE", value);
    }
    let out = command.output().unwrap();
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    // A stage line is `  name summary    elapsed  rate`: keep the name and the summary.
    let stages = [
        "schema", "fixtures", "backfill", "checks", "verify", "snapshot",
    ];
    let text: Vec<String> = stdout
        .lines()
        .map(|line| {
            let is_stage = stages
                .iter()
                .any(|s| line.strip_prefix("  ").is_some_and(|l| l.starts_with(s)));
            if is_stage {
                line.chars()
                    .take(56)
                    .collect::<String>()
                    .trim_end()
                    .to_string()
            } else {
                line.to_string()
            }
        })
        .collect();
    (out.status.code(), text.join("\n") + "\n")
}

/// A data migration's first snapshot is NEW, not a difference; it is accepted with cargo-insta
/// or, without it, with `INSTA_UPDATE=always`; `--check` fails on it with "no accepted snapshot".
#[test]
fn a_first_snapshot_is_new_and_accepted_without_cargo_insta() {
    let ws = Workspace::new();

    let (code, out) = sample_cli(&ws, &["V1"], None);
    assert_eq!(code, Some(1), "{out}");
    insta::assert_snapshot!("first_snapshot_review", out);
    assert_eq!(
        ws.snapshot_files(),
        vec!["V1__backfill_counter_caches.snap.new"]
    );

    let (code, out) = sample_cli(&ws, &["V1", "--check"], None);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("  snapshot  NEW: no accepted snapshot\n"),
        "{out}"
    );
    assert!(out.contains("no accepted snapshot at "), "{out}");
    assert!(
        out.ends_with("to update: run `cargo xtask backfill sample V1__backfill_counter_caches` and accept the snapshot with `cargo insta review` (or `INSTA_UPDATE=always cargo xtask backfill sample V1__backfill_counter_caches`)\n"),
        "{out}"
    );

    let (code, out) = sample_cli(&ws, &["V1"], Some("always"));
    assert_eq!(code, Some(0), "{out}");
    insta::assert_snapshot!("first_snapshot_accepted", out);
    assert_eq!(
        ws.snapshot_files(),
        vec!["V1__backfill_counter_caches.snap"],
        "the pending file is gone"
    );

    let (code, out) = sample_cli(&ws, &["--check"], None);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("rows match, approved"), "{out}");
    assert_eq!(
        first_line(&ws.status()),
        "V1__backfill_counter_caches  approved"
    );
}
