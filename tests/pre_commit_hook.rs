//! `hooks/pre-commit` in a throwaway git repository, end to end: a stand-in `cargo` on `PATH`
//! runs the real linter binary (`cargo xtask migrate lint --staged` becomes `xtask-migrate
//! migrate lint --staged`) and logs that it ran. The hook must lint the staged content (not the
//! working-tree file) under the file's real path, stop the commit on findings, and stay out of
//! the way (cargo never started) when no migration is staged.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::bin;

const FAKE_CARGO: &str = r#"#!/bin/sh
echo ran >> "$FAKE_CARGO_LOG"
[ "$1" = xtask ] || exit 97
shift
exec "$XTASK_MIGRATE_BIN" "$@"
"#;

const BACKFILL: &str = "ALTER TABLE users ADD COLUMN n bigint;\nUPDATE users SET n = 1;\n";
const CLEAN: &str = "CREATE TABLE posts (id bigint PRIMARY KEY);\n";

struct Repo {
    dir: tempfile::TempDir,
    bin: tempfile::TempDir,
}

impl Repo {
    fn new() -> Repo {
        let repo = Repo {
            dir: tempfile::tempdir().unwrap(),
            bin: tempfile::tempdir().unwrap(),
        };
        let cargo = repo.bin.path().join("cargo");
        fs::write(&cargo, FAKE_CARGO).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&cargo, fs::Permissions::from_mode(0o755)).unwrap();
        }
        repo.git(&["init", "-q"]);
        repo.write("README.md", "example\n");
        repo.write(
            "migrations/V1__users.sql",
            "CREATE TABLE users (id bigint PRIMARY KEY);\n",
        );
        repo.git(&["add", "."]);
        repo.git(&["commit", "-q", "-m", "init"]);
        repo
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn git(&self, args: &[&str]) {
        let status = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(self.path())
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .status()
            .expect("git runs");
        assert!(status.success(), "git {args:?}");
    }

    fn write(&self, path: &str, text: &str) {
        let path = self.path().join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn log(&self) -> PathBuf {
        self.bin.path().join("cargo.log")
    }

    fn cargo_ran(&self) -> bool {
        self.log().exists()
    }

    fn run_hook(&self) -> Output {
        let hook = Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks/pre-commit");
        let path = format!(
            "{}:{}",
            self.bin.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let _ = fs::remove_file(self.log());
        Command::new("sh")
            .arg(hook)
            .current_dir(self.path())
            .env("PATH", path)
            .env("FAKE_CARGO_LOG", self.log())
            .env("XTASK_MIGRATE_BIN", bin())
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .expect("run the hook")
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn exits_before_cargo_when_no_migration_is_staged() {
    let repo = Repo::new();
    repo.write("src/main.rs", "fn main() {}\n");
    repo.git(&["add", "src/main.rs"]);
    // A bad migration that is not staged does not concern this commit.
    repo.write("migrations/V2__bad.sql", BACKFILL);
    let out = repo.run_hook();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !repo.cargo_ran(),
        "cargo must not start when no migration is staged"
    );
}

#[test]
fn lints_the_staged_content_under_its_real_path() {
    let repo = Repo::new();
    // Staged: a backfill. Working tree: fixed, but not staged. The commit would hold the backfill.
    repo.write("migrations/V2__counts.sql", BACKFILL);
    repo.git(&["add", "migrations/V2__counts.sql"]);
    repo.write("migrations/V2__counts.sql", CLEAN);
    let out = repo.run_hook();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let output = text(&out);
    assert!(repo.cargo_ran());
    assert!(output.contains("error[backfill-update]"), "{output}");
    assert!(
        output.contains("--> migrations/V2__counts.sql:2:1"),
        "{output}"
    );
    assert!(output.contains("git commit --no-verify"), "{output}");
    // Only the staged file is reported on.
    assert!(output.contains("in 1 file"), "{output}");
}

#[test]
fn passes_when_the_staged_content_is_clean() {
    let repo = Repo::new();
    // Staged: clean. Working tree: a backfill, not staged: not part of the commit.
    repo.write("migrations/V2__posts.sql", CLEAN);
    repo.git(&["add", "migrations/V2__posts.sql"]);
    repo.write("migrations/V2__posts.sql", BACKFILL);
    let out = repo.run_hook();
    assert!(out.status.success(), "{}", text(&out));
    assert!(repo.cargo_ran());
}

#[test]
fn staged_files_see_the_schema_of_earlier_migrations() {
    let repo = Repo::new();
    // V1 made `users.id` a bigint; a later change to `text` rewrites the table. The linter only
    // knows that from the committed V1, which is not staged.
    repo.write(
        "migrations/V2__id_type.sql",
        "SET lock_timeout = '2s';\nALTER TABLE users ALTER COLUMN id TYPE numeric;\n",
    );
    repo.git(&["add", "migrations/V2__id_type.sql"]);
    let out = repo.run_hook();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let output = text(&out);
    assert!(output.contains("backfill-alter-column-type"), "{output}");
    assert!(
        output.contains("`int8`") || output.contains("bigint"),
        "{output}"
    );
}

#[test]
fn staged_file_names_are_checked_in_the_real_directory() {
    let repo = Repo::new();
    repo.write("migrations/V2__add posts.sql", CLEAN);
    repo.git(&["add", "migrations"]);
    let out = repo.run_hook();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let output = text(&out);
    assert!(output.contains("migration-name-skipped"), "{output}");
    assert!(output.contains("migrations/V2__add posts.sql"), "{output}");
}
