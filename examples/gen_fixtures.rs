//! Writes the example application's fixtures (users, follows, posts) deterministically.
//!
//! `cargo run --example gen_fixtures` regenerates the committed `fixtures/` (2,500 users);
//! `cargo run --example gen_fixtures -- --users 100000 --out /tmp/big` makes a larger set.
//! The same seed always gives the same bytes, so regenerating is a no-op unless the generator
//! changed, and the committed fixtures' diff shows exactly what did.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut users = 2500usize;
    let mut out = PathBuf::from("fixtures");
    let mut seed = 20240229u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        let parsed = match (arg.as_str(), value) {
            ("--users", Some(v)) => v.parse().map(|v| users = v).is_ok(),
            ("--seed", Some(v)) => v.parse().map(|v| seed = v).is_ok(),
            ("--out", Some(v)) => {
                out = PathBuf::from(v);
                true
            }
            _ => false,
        };
        if !parsed {
            eprintln!("usage: gen_fixtures [--users N] [--seed N] [--out DIR]");
            return ExitCode::from(2);
        }
    }
    match pg_harness::write_social_fixtures(&out, users, seed) {
        Ok(sizes) => {
            println!(
                "wrote {}: {} users, {} follows, {} posts",
                out.display(),
                sizes.users,
                sizes.follows,
                sizes.posts
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen_fixtures: {}: {e}", out.display());
            ExitCode::from(2)
        }
    }
}
