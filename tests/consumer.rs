//! Other workspaces mounting this library the way the README's "Mounting it in your workspace"
//! section says: a `.cargo/config.toml` alias, an `xtask` crate whose `main` is
//! `xtask_migrate::cli::main()`, a path dependency on this repository. Each workspace resolves its
//! own dependencies (no lockfile of ours is copied), builds, and its binary is run the way a user
//! runs it.
//!
//! - lint-only (`default-features = false, features = ["lint", "mimalloc"]`, as the README
//!   recommends): holds no database crate, has mimalloc as its allocator, lints,
//!   and has no `backfill` command;
//! - default features, with the README's `.gitignore` and `[profile.dev.package]` lines: through
//!   `cargo xtask`, lints clean, samples a data migration on embedded SQLite (the first snapshot
//!   is new and pending), accepts it without cargo-insta, checks it, and `backfill status` shows
//!   it approved.
//!
//! Both build into `target/consumer/` of this repository, kept between runs, so only the first
//! run compiles the dependency trees (the full build reuses what the lint-only one compiled);
//! later runs rebuild the small `xtask` crates. The two builds share that directory one at a time.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use crate::support::write;

/// The crates a lint-only build must not compile.
const DATABASE_CRATES: &[&str] = &["rusqlite", "libsqlite3-sys", "postgres", "refinery"];

/// One consumer build at a time: both write `target/consumer/debug/xtask`.
static BUILD: Mutex<()> = Mutex::new(());

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // No debug info: the build is only run, never debugged, and is smaller and faster without.
    cmd.env("CARGO_TARGET_DIR", target_dir())
        .env("CARGO_PROFILE_DEV_DEBUG", "0")
        .env("CARGO_TERM_COLOR", "never")
        // The consumer's own settings, not this test run's.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CI")
        .env_remove("INSTA_UPDATE")
        .env_remove("DATABASE_URL");
    cmd
}

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/consumer")
}

/// The path dependency line of the consumer's `xtask/Cargo.toml`, with `extra` after the path.
fn dependency(extra: &str) -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    format!(
        "xtask-migrate = {{ path = {:?}{extra} }}",
        repo.display().to_string()
    )
}

/// The README's steps 1, 2 and 4: the xtask crate, its `main`, the alias.
fn xtask_crate(root: &Path, dependency: &str) {
    write(
        &root.join(".cargo/config.toml"),
        "[alias]\nxtask = \"run --package xtask --\"\n",
    );
    write(
        &root.join("xtask/Cargo.toml"),
        &format!(
            "[package]\nname = \"xtask\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
             [dependencies]\n{dependency}\n"
        ),
    );
    write(
        &root.join("xtask/src/main.rs"),
        "fn main() -> std::process::ExitCode {\n    xtask_migrate::cli::main()\n}\n",
    );
}

#[track_caller]
fn succeeded(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The packages `cargo tree` lists for the consumer's xtask (normal and build dependencies).
fn packages(root: &Path) -> Vec<String> {
    let tree = cargo()
        .current_dir(root)
        .args(["tree", "-e", "no-dev", "--prefix", "none", "-p", "xtask"])
        .output()
        .expect("run cargo tree");
    succeeded(&tree, "cargo tree");
    String::from_utf8_lossy(&tree.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .collect()
}

/// The lint-only workspace: one app migration with a backfill in it, and a data migration with a
/// mistake (the linter checks data-migration files without any database).
fn lint_only_workspace() -> tempfile::TempDir {
    let ws = tempfile::tempdir().unwrap();
    let root = ws.path();
    write(
        &root.join("Cargo.toml"),
        "[workspace]\nmembers = [\"xtask\"]\nresolver = \"3\"\n\n\
         [workspace.metadata.xtask-migrate]\nmigrations = \"db/migrations\"\n",
    );
    xtask_crate(
        root,
        &dependency(", default-features = false, features = [\"lint\", \"mimalloc\"]"),
    );
    write(
        &root.join("db/migrations/V1__users.sql"),
        "CREATE TABLE users (id bigint PRIMARY KEY, handle text NOT NULL);\n",
    );
    write(
        &root.join("db/migrations/V2__user_flags.sql"),
        "ALTER TABLE users ADD COLUMN verified boolean;\nUPDATE users SET verified = false;\n",
    );
    write(
        &root.join("data-migrations/V1__verify.sql"),
        "-- @requires 2\n-- @table users\n-- @key id\n\n-- @batch\n\
         UPDATE users SET verified = true WHERE id > :lower AND id <= :upper;\n",
    );
    ws
}

#[test]
fn a_lint_only_workspace_builds_without_database_crates_and_lints() {
    let ws = lint_only_workspace();
    let root = ws.path();

    let packages = packages(root);
    for wanted in ["xtask-migrate", "mimalloc"] {
        assert!(
            packages.iter().any(|p| p == wanted),
            "{wanted}: {packages:?}"
        );
    }
    for database in DATABASE_CRATES {
        assert!(
            !packages.iter().any(|p| p == database),
            "the lint-only build depends on {database}: {packages:?}"
        );
    }

    let xtask = {
        let _build = BUILD.lock().unwrap_or_else(|e| e.into_inner());
        let build = cargo()
            .current_dir(root)
            .args(["build", "--package", "xtask"])
            .output()
            .expect("run cargo build");
        succeeded(&build, "cargo build --package xtask");
        // A copy of its own: the other consumer's build replaces `debug/xtask`.
        let built = target_dir().join(format!("debug/xtask{}", std::env::consts::EXE_SUFFIX));
        let xtask = root.join(format!("xtask-lint{}", std::env::consts::EXE_SUFFIX));
        std::fs::copy(&built, &xtask).unwrap();
        xtask
    };

    // The configured migrations directory (found with `cargo metadata`) and the data migrations.
    let lint = Command::new(&xtask)
        .current_dir(root)
        .args(["migrate", "lint", "--color", "never"])
        .env_remove("CI")
        .output()
        .expect("run the consumer's xtask");
    let stdout = String::from_utf8_lossy(&lint.stdout);
    assert_eq!(
        lint.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&lint.stderr)
    );
    assert!(stdout.contains("backfill-update"), "{stdout}");
    assert!(stdout.contains("V2__user_flags.sql"), "{stdout}");
    assert!(stdout.contains("data-migration-invalid"), "{stdout}");

    let list = Command::new(&xtask)
        .current_dir(root)
        .args(["migrate", "lint", "--list-rules"])
        .output()
        .expect("run the consumer's xtask");
    succeeded(&list, "migrate lint --list-rules");
    let rules = String::from_utf8_lossy(&list.stdout);
    assert!(rules.contains("backfill-update"), "{rules}");

    // Without the `backfill` feature there is no `backfill` command.
    let backfill = Command::new(&xtask)
        .current_dir(root)
        .args(["backfill", "status"])
        .output()
        .expect("run the consumer's xtask");
    assert_eq!(backfill.status.code(), Some(2), "{backfill:?}");

    // `--estimate` needs the PostgreSQL client: one line naming the feature, exit 2, and the
    // URL's password nowhere.
    let estimate = Command::new(&xtask)
        .current_dir(root)
        .args([
            "migrate",
            "lint",
            "--estimate",
            "--database-url",
            "postgres://app:consumer-secret@127.0.0.1:1/app",
        ])
        .output()
        .expect("run the consumer's xtask");
    let stderr = String::from_utf8_lossy(&estimate.stderr);
    assert_eq!(estimate.status.code(), Some(2), "{estimate:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("`backfill` feature"), "{stderr}");
    assert!(estimate.stdout.is_empty(), "{estimate:?}");
    assert!(!stderr.contains("consumer-secret"), "{stderr}");
}

/// The README's mounting section, all of it, in a workspace with no configuration of its own:
/// the default directories and the default engine (`auto`).
fn full_workspace() -> tempfile::TempDir {
    let ws = tempfile::tempdir().unwrap();
    let root = ws.path();
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    // Step 6: the profile lines, copied from the README as a user would.
    let profile: String = readme
        .lines()
        .skip_while(|line| line.trim() != "[profile.dev.package]")
        .skip(1)
        .take_while(|line| line.trim() != "```")
        .map(|line| format!("{}\n", line.trim()))
        .collect();
    assert!(
        profile.contains("squawk-parser.opt-level = 3"),
        "the README's [profile.dev.package] block: {profile:?}"
    );
    write(
        &root.join("Cargo.toml"),
        &format!(
            "[workspace]\nmembers = [\"xtask\"]\nresolver = \"3\"\n\n[profile.dev.package]\n{profile}"
        ),
    );
    xtask_crate(root, &dependency(""));
    // Step 5.
    write(&root.join(".gitignore"), "/target\n*.snap.new\n");
    write(
        &root.join("migrations/V1__create_accounts.sql"),
        "CREATE TABLE accounts (\n    id bigint PRIMARY KEY,\n    email text NOT NULL,\n    \
         plan text NOT NULL\n);\n",
    );
    write(
        &root.join("migrations/V2__add_seats.sql"),
        "-- Structure only: data-migrations/V1__fill_seats.sql fills it.\n\
         SET lock_timeout = '2s';\n\nALTER TABLE accounts ADD COLUMN seats integer;\n",
    );
    write(
        &root.join("data-migrations/V1__fill_seats.sql"),
        "-- @requires 2\n-- @table accounts\n-- @key id\n-- @batch-size 2\n\n-- @batch\n\
         UPDATE accounts SET seats = CASE plan WHEN 'team' THEN 10 ELSE 1 END\n\
         WHERE id > :lower AND id <= :upper AND seats IS NULL;\n\n\
         -- @check every account has seats\n\
         SELECT id FROM accounts WHERE seats IS NULL ORDER BY id;\n\n\
         -- @snapshot\n\
         SELECT plan, count(*) AS accounts, sum(seats) AS seats FROM accounts GROUP BY plan ORDER BY plan;\n",
    );
    write(
        &root.join("fixtures/accounts.csv"),
        "id,email,plan\n1,a@example.test,free\n2,b@example.test,team\n5,c@example.test,team\n\
         9,d@example.test,free\n12,e@example.test,free\n",
    );
    ws
}

/// `cargo xtask ARGS` in the consumer workspace, with `INSTA_UPDATE` set only when given.
fn xtask(root: &Path, args: &[&str], insta_update: Option<&str>) -> (Option<i32>, String) {
    let mut cmd = cargo();
    cmd.current_dir(root).arg("xtask").args(args);
    if let Some(value) = insta_update {
        cmd.env("INSTA_UPDATE", value);
    }
    let out = cmd.output().expect("run cargo xtask");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Cargo's own lines (Compiling, Finished, Running) go to stderr; the tool's errors too.
    let tool_stderr: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            ![
                "Compiling",
                "Finished",
                "Running",
                "Blocking",
                "Locking",
                "Adding",
                "Updating",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .collect();
    (
        out.status.code(),
        format!("{stdout}{}", tool_stderr.join("\n")),
    )
}

#[test]
fn a_default_workspace_builds_and_lints_samples_approves_and_shows_status() {
    let ws = full_workspace();
    let root = ws.path();

    let packages = packages(root);
    for database in ["rusqlite", "postgres", "refinery"] {
        assert!(
            packages.iter().any(|p| p == database),
            "the default build lacks {database}: {packages:?}"
        );
    }

    let _build = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let (code, out) = xtask(root, &["migrate", "lint", "--color", "never"], None);
    assert_eq!(code, Some(0), "{out}");

    let (code, out) = xtask(root, &["backfill", "status"], None);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("V1__fill_seats  no snapshot"), "{out}");

    // The first sample: the snapshot is new, pending review, and the run says how to accept it.
    let (code, out) = xtask(root, &["backfill", "sample"], None);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("NEW"), "{out}");
    assert!(
        out.contains("INSTA_UPDATE=always cargo xtask backfill sample V1__fill_seats"),
        "{out}"
    );
    let snapshots = root.join("data-migrations/snapshots");
    assert!(snapshots.join("V1__fill_seats.snap.new").is_file(), "{out}");

    let (code, out) = xtask(root, &["backfill", "sample", "V1"], Some("always"));
    assert_eq!(code, Some(0), "{out}");
    let snap = std::fs::read_to_string(snapshots.join("V1__fill_seats.snap")).unwrap();
    assert!(snap.contains("free"), "{snap}");
    assert!(
        !snapshots.join("V1__fill_seats.snap.new").exists(),
        "the pending snapshot is gone once accepted"
    );

    let (code, out) = xtask(root, &["backfill", "sample", "--check"], None);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("rows match, approved"), "{out}");

    let (code, out) = xtask(root, &["backfill", "status"], None);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("V1__fill_seats  approved"), "{out}");
}
