//! Benchmark: `migrate lint` against squawk on the same files, in one run.
//!
//! Usage: `cargo run --release --example bench_lint -- --ours target/release/xtask
//!         --squawk "$(pyenv which squawk)" [--runs 7] DIR...`
//!
//! Both tools get the same explicit list of files under the directories (`*.sql`, and Synapse's
//! PostgreSQL-only `*.sql.postgres`), both write JSON,
//! and they run alternately (so a busy neighbour slows both alike). Prints each tool's median wall
//! time and the ratio ours/squawk (below 1.0: faster than squawk), plus what each found, to show
//! the extra work (backfill findings squawk does not look for).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let mut ours = None;
    let mut squawk = None;
    let mut runs = 7usize;
    let mut dirs = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--ours" => ours = args.next().map(PathBuf::from),
            "--squawk" => squawk = args.next().map(PathBuf::from),
            "--runs" => runs = args.next().and_then(|n| n.parse().ok()).unwrap_or(runs),
            _ => dirs.push(PathBuf::from(arg)),
        }
    }
    let (Some(ours), Some(squawk)) = (ours, squawk) else {
        eprintln!("usage: bench_lint --ours PATH --squawk PATH [--runs N] DIR...");
        std::process::exit(2);
    };

    let mut files: Vec<String> = dirs
        .iter()
        .flat_map(|d| walkdir::WalkDir::new(d).into_iter().filter_map(Result::ok))
        .filter(|e| {
            let name = e.file_name().to_string_lossy();
            e.file_type().is_file() && (name.ends_with(".sql") || name.ends_with(".sql.postgres"))
        })
        .map(|e| e.path().display().to_string())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .sql files under {dirs:?}");

    let ours_cmd = |files: &[String]| {
        let mut c = Command::new(&ours);
        c.args(["migrate", "lint", "--format", "json"]).args(files);
        c
    };
    let squawk_cmd = |files: &[String]| {
        let mut c = Command::new(&squawk);
        c.args(["--reporter", "json"]).args(files);
        c
    };

    // Warm the page cache and check both tools run.
    let ours_out = output(ours_cmd(&files));
    let squawk_out = output(squawk_cmd(&files));

    let mut ours_times = Vec::new();
    let mut squawk_times = Vec::new();
    for _ in 0..runs {
        ours_times.push(time(ours_cmd(&files)));
        squawk_times.push(time(squawk_cmd(&files)));
    }
    let ours_median = median(&mut ours_times);
    let squawk_median = median(&mut squawk_times);

    let ours_json: serde_json::Value =
        serde_json::from_str(&ours_out).expect("our JSON output parses");
    let findings = ours_json["findings"]
        .as_array()
        .map_or(&[][..], |v| v.as_slice());
    let count = |category: &str| {
        findings
            .iter()
            .filter(|f| f["category"] == category)
            .count()
    };
    let squawk_json: serde_json::Value = serde_json::from_str(&squawk_out).unwrap_or_default();
    let squawk_findings = squawk_json.as_array().map_or(0, |v| v.len());

    println!("files: {}", files.len());
    println!(
        "ours:   median {:>7.3} s over {runs} runs; {} findings ({} backfill, {} lock, {} syntax)",
        ours_median.as_secs_f64(),
        findings.len(),
        count("backfill"),
        count("lock"),
        count("syntax"),
    );
    println!(
        "squawk: median {:>7.3} s over {runs} runs; {squawk_findings} findings (no backfill rules)",
        squawk_median.as_secs_f64()
    );
    println!(
        "ratio ours/squawk: {:.2} (below 1.00 is faster than squawk)",
        ours_median.as_secs_f64() / squawk_median.as_secs_f64()
    );
}

fn output(mut cmd: Command) -> String {
    let out = cmd.stderr(Stdio::inherit()).output().expect("run linter");
    let code = out.status.code();
    assert!(
        matches!(code, Some(0) | Some(1)),
        "{cmd:?} exited with {:?} (expected 0 or 1)",
        out.status
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn time(mut cmd: Command) -> Duration {
    let started = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run linter");
    assert!(
        matches!(status.code(), Some(0) | Some(1)),
        "{cmd:?}: {status}"
    );
    started.elapsed()
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}
