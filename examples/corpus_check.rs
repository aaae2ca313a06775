//! Parses every migration file under the given directories and reports which ones have syntax
//! findings: the robustness check `.ci/run` runs over `../shared/corpus/`.
//!
//! Usage: `cargo run --release --example corpus_check -- [--dialect postgres|sqlite]
//!         [--known-invalid LIST] DIR...`
//!
//! `LIST` names files that the database itself rejects (one path suffix per line, `#` starts a
//! comment): those may have syntax findings. Any other file with one fails the check (exit 1):
//! the linter must accept everything the database accepts.
//! Files: `*.sql`, plus `*.sql.postgres` (postgres) or `*.sql.sqlite` (sqlite), as Synapse names
//! its dialect-specific deltas. Prints one line per file with a syntax finding, then a summary.

use std::path::PathBuf;
use std::time::Instant;

use xtask_migrate::lint::parse_guarded;
use xtask_migrate::sql::Dialect;

fn main() {
    let mut dialect = Dialect::Postgres;
    let mut dirs = Vec::new();
    let mut known_invalid: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dialect" => {
                dialect = match args.next().as_deref() {
                    Some("sqlite") => Dialect::Sqlite,
                    Some("postgres") => Dialect::Postgres,
                    other => {
                        eprintln!("error: unknown dialect {other:?}");
                        std::process::exit(2);
                    }
                }
            }
            "--known-invalid" => {
                let list = args.next().expect("--known-invalid needs a file");
                let text = std::fs::read_to_string(&list).expect("read the known-invalid list");
                known_invalid.extend(
                    text.lines()
                        .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
                        .filter(|l| !l.is_empty()),
                );
            }
            _ => dirs.push(PathBuf::from(arg)),
        }
    }
    let suffix = match dialect {
        Dialect::Postgres => ".sql.postgres",
        Dialect::Sqlite => ".sql.sqlite",
    };
    let mut files: Vec<PathBuf> = dirs
        .iter()
        .flat_map(|d| walkdir::WalkDir::new(d).into_iter().filter_map(Result::ok))
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .filter(|p| {
            let name = p.to_string_lossy();
            name.ends_with(".sql") || name.ends_with(suffix)
        })
        .collect();
    files.sort();

    let started = Instant::now();
    let (mut clean, mut statements, mut unexpected) = (0usize, 0usize, 0usize);
    for path in &files {
        let bytes = std::fs::read(path).expect("read corpus file");
        let text = String::from_utf8_lossy(&bytes);
        let parsed = parse_guarded(&text, dialect);
        statements += parsed.statements.len();
        match parsed.syntax_errors.first() {
            None => clean += 1,
            Some(e) => {
                let line = text[..e.span.start.min(text.len())].matches('\n').count() + 1;
                let expected = known_invalid
                    .iter()
                    .any(|k| path.to_string_lossy().ends_with(k.as_str()));
                if !expected {
                    unexpected += 1;
                }
                let tag = if expected {
                    "known invalid"
                } else {
                    "UNEXPECTED"
                };
                println!("{tag}: {}:{line}: {}", path.display(), e.message);
            }
        }
    }
    println!(
        "{dialect}: {clean} of {} files parse without a syntax finding ({statements} statements, {:.2?})",
        files.len(),
        started.elapsed()
    );
    if unexpected > 0 {
        println!("{unexpected} files have syntax findings but are not listed as invalid");
        std::process::exit(1);
    }
}
