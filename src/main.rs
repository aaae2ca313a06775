//! The same commands as `cargo xtask`, as a standalone binary (`xtask-migrate migrate lint`), for
//! tests and for repositories that are not Rust workspaces.

fn main() -> std::process::ExitCode {
    xtask_migrate::cli::main()
}
