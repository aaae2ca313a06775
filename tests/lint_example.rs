//! The example schema in `migrations/` must pass its own linter: the repository is both the tool
//! and a project that uses it, so a finding here is either a bad migration or a rule crying wolf.

use std::path::{Path, PathBuf};

use xtask_migrate::lint::{LintOptions, lint_text};

fn migrations() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("read directory entry").path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "sql"))
        .collect();
    files.sort();
    files
}

#[test]
fn example_migrations_are_clean() {
    let files = migrations();
    assert!(
        files.len() >= 4,
        "expected the example migrations, found {files:?}"
    );
    let options = LintOptions::default();
    let mut problems = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        for f in lint_text(path, &text, &options) {
            problems.push(format!(
                "{}: {} {}: {}",
                path.display(),
                f.severity.as_str(),
                f.rule,
                f.message
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the example migrations have findings:\n{}",
        problems.join("\n")
    );
}

#[test]
fn example_migrations_are_parsed() {
    // A clean result from a front end that parsed nothing would prove nothing.
    let options = LintOptions::default();
    for path in migrations() {
        let text = std::fs::read_to_string(&path).expect("read migration");
        let parsed = xtask_migrate::lint::parse_guarded(&text, options.dialect);
        assert!(
            !parsed.statements.is_empty(),
            "{}: no statements parsed",
            path.display()
        );
        assert!(
            parsed.syntax_errors.is_empty(),
            "{}: {:?}",
            path.display(),
            parsed.syntax_errors
        );
    }
}
