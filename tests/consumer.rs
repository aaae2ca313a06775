//! Another workspace mounting the linter the way the README's "Mounting it in your workspace"
//! section says, with only the `lint` feature: a `.cargo/config.toml` alias, an `xtask` crate
//! whose `main` is `xtask_migrate::cli::main()`, a path dependency on this repository with
//! `default-features = false, features = ["lint"]`. The workspace resolves its own dependencies
//! (no lockfile of ours is copied), holds no database crate, builds, and its binary lints.
//!
//! The build goes to `target/consumer-lint/` of this repository, kept between runs, so only the
//! first run compiles the lint-only dependency tree; later runs rebuild the small `xtask` crate.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::write;

/// The crates a lint-only build must not compile.
const DATABASE_CRATES: &[&str] = &["rusqlite", "libsqlite3-sys", "postgres", "refinery"];

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // No debug info: the build is only run, never debugged, and is smaller and faster without.
    cmd.env("CARGO_TARGET_DIR", target_dir())
        .env("CARGO_PROFILE_DEV_DEBUG", "0")
        .env("CARGO_TERM_COLOR", "never");
    cmd
}

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/consumer-lint")
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

/// The consumer workspace: the xtask crate, one app migration with a backfill in it, and a data
/// migration with a mistake (the linter checks data-migration files without any database).
fn consumer_workspace() -> tempfile::TempDir {
    let ws = tempfile::tempdir().unwrap();
    let root = ws.path();
    write(
        &root.join("Cargo.toml"),
        "[workspace]\nmembers = [\"xtask\"]\nresolver = \"3\"\n\n\
         [workspace.metadata.xtask-migrate]\nmigrations = \"db/migrations\"\n",
    );
    write(
        &root.join(".cargo/config.toml"),
        "[alias]\nxtask = \"run --package xtask --\"\n",
    );
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    write(
        &root.join("xtask/Cargo.toml"),
        &format!(
            "[package]\nname = \"xtask\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
             [dependencies]\nxtask-migrate = {{ path = {:?}, default-features = false, features = [\"lint\"] }}\n",
            repo.display().to_string()
        ),
    );
    write(
        &root.join("xtask/src/main.rs"),
        "fn main() -> std::process::ExitCode {\n    xtask_migrate::cli::main()\n}\n",
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
    let ws = consumer_workspace();
    let root = ws.path();

    let tree = cargo()
        .current_dir(root)
        .args(["tree", "-e", "no-dev", "--prefix", "none", "-p", "xtask"])
        .output()
        .expect("run cargo tree");
    succeeded(&tree, "cargo tree");
    let tree = String::from_utf8_lossy(&tree.stdout);
    let packages: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(packages.contains(&"xtask-migrate"), "{tree}");
    for database in DATABASE_CRATES {
        assert!(
            !packages.contains(database),
            "the lint-only build depends on {database}:\n{tree}"
        );
    }

    let build = cargo()
        .current_dir(root)
        .args(["build", "--package", "xtask"])
        .output()
        .expect("run cargo build");
    succeeded(&build, "cargo build --package xtask");
    let xtask = target_dir().join(format!("debug/xtask{}", std::env::consts::EXE_SUFFIX));

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
}
