//! This workspace's `cargo xtask`: a thin shell over the `xtask-migrate` library, as any
//! workspace that mounts it would have.

fn main() -> std::process::ExitCode {
    xtask_migrate::cli::main()
}
