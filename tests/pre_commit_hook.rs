//! `hooks/pre-commit` in a throwaway git repository, with a stand-in `cargo` on `PATH` that
//! records what it was asked to lint: the hook must hand over the staged content (not the
//! working-tree file) under the file's relative path, and stay out of the way when no migration
//! is staged.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FAKE_CARGO: &str = r#"#!/bin/sh
for arg in "$@"; do
    printf 'arg %s\n' "$arg" >> "$FAKE_CARGO_LOG"
done
for arg in "$@"; do
    case "$arg" in
        *.sql) printf 'file %s = %s\n' "${arg#"$PWD"/}" "$(cat "$arg")" >> "$FAKE_CARGO_LOG" ;;
    esac
done
exit "${FAKE_CARGO_EXIT:-0}"
"#;

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
        repo.git(&["add", "README.md"]);
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
        self.bin.path().join("log")
    }

    /// Runs the hook as git would: from the top of the work tree, with `sh`.
    fn run_hook(&self, cargo_exit: u8) -> Output {
        let hook = Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks/pre-commit");
        let path = format!(
            "{}:{}",
            self.bin.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new("sh")
            .arg(hook)
            .current_dir(self.path())
            .env("PATH", path)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("FAKE_CARGO_LOG", self.log())
            .env("FAKE_CARGO_EXIT", cargo_exit.to_string())
            .output()
            .expect("sh runs the hook")
    }

    fn leftovers(&self) -> Vec<String> {
        fs::read_dir(self.path().join(".git"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("xtask-migrate-staged"))
            .collect()
    }
}

#[test]
fn exits_before_cargo_when_no_migration_is_staged() {
    let repo = Repo::new();
    repo.write("src/main.rs", "fn main() {}\n");
    repo.write("migrations/V1__not_staged.sql", "SELECT 1;\n");
    repo.git(&["add", "src/main.rs"]);
    let out = repo.run_hook(0);
    assert!(out.status.success(), "{out:?}");
    assert!(
        !repo.log().exists(),
        "cargo ran: {:?}",
        fs::read_to_string(repo.log())
    );
}

#[test]
fn lints_the_staged_content_under_its_relative_path() {
    let repo = Repo::new();
    repo.write("migrations/V1__gone.sql", "SELECT 0;\n");
    repo.git(&["add", "."]);
    repo.git(&["commit", "-q", "-m", "gone"]);
    repo.git(&["rm", "-q", "migrations/V1__gone.sql"]);
    repo.write("migrations/V2__users.sql", "staged");
    repo.write("migrations/sub/V3__with space.sql", "nested");
    repo.write("migrations/notes.txt", "not a migration");
    repo.git(&["add", "migrations"]);
    // Edits after staging are not what gets committed.
    repo.write("migrations/V2__users.sql", "working tree");

    let out = repo.run_hook(0);
    assert!(out.status.success(), "{out:?}");
    let log = fs::read_to_string(repo.log()).unwrap();
    let args: Vec<&str> = log.lines().filter_map(|l| l.strip_prefix("arg ")).collect();
    assert_eq!(&args[..3], ["xtask", "migrate", "lint"], "{log}");
    let mut files: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("file "))
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{log}");
    // The staged copies live in the git directory and keep their paths under it.
    assert!(files[0].starts_with(".git/xtask-migrate-staged."), "{log}");
    assert!(
        files[0].ends_with("/migrations/V2__users.sql = staged"),
        "{log}"
    );
    assert!(
        files[1].ends_with("/migrations/sub/V3__with space.sql = nested"),
        "{log}"
    );
    assert_eq!(args.len(), 5, "only the two staged migrations: {log}");
    assert!(repo.leftovers().is_empty(), "{:?}", repo.leftovers());
}

#[test]
fn blocks_the_commit_when_the_linter_fails() {
    let repo = Repo::new();
    repo.write("migrations/V1__a.sql", "UPDATE users SET n = 1;\n");
    repo.git(&["add", "migrations"]);
    let out = repo.run_hook(1);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("migrate lint failed on the staged migrations"),
        "{stderr}"
    );
    assert!(repo.leftovers().is_empty(), "{:?}", repo.leftovers());
}
