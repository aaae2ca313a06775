#!/usr/bin/env bash
# Cold build time of a workspace that mounts xtask-migrate: lint only against the default
# features.
#
# Usage: examples/cold_build.sh            (from anywhere; needs cargo and the crates.io index)
#
# Makes two consumer workspaces in a temporary directory, each mounted the way the README's
# "Mounting it in your workspace" section says: a `.cargo/config.toml` alias
# `xtask = "run --package xtask --"` and an `xtask` crate whose `main` is
# `xtask_migrate::cli::main()`, depending on this repository by path. One asks for
# `default-features = false, features = ["lint", "mimalloc"]`, the other for the default features. Each
# resolves its own dependencies (no lockfile of this repository is copied) and fetches them
# first, untimed; then `cargo build -p xtask` runs in its own empty `CARGO_TARGET_DIR` and its
# wall time is printed, with the number of crates compiled. The two builds run one after the
# other, never at once. Other load on the machine slows both: say so with the figures.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/xtask-cold-build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# consumer NAME DEPENDENCY_FEATURES: writes the workspace $work/NAME.
consumer() {
    local ws=$work/$1
    mkdir -p "$ws/.cargo" "$ws/xtask/src"
    printf '[workspace]\nmembers = ["xtask"]\nresolver = "3"\n' > "$ws/Cargo.toml"
    printf '[alias]\nxtask = "run --package xtask --"\n' > "$ws/.cargo/config.toml"
    cat > "$ws/xtask/Cargo.toml" <<EOF
[package]
name = "xtask"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
xtask-migrate = { path = "$repo"$2 }
EOF
    printf 'fn main() -> std::process::ExitCode {\n    xtask_migrate::cli::main()\n}\n' \
        > "$ws/xtask/src/main.rs"
}

consumer lint ', default-features = false, features = ["lint"]'
consumer default ''

results=()
for name in lint default; do
    ws=$work/$name
    (cd "$ws" && cargo fetch --quiet)
    target=$work/target-$name
    start=$EPOCHREALTIME
    (cd "$ws" && CARGO_TARGET_DIR=$target cargo build -p xtask --color never 2> "$work/$name.log") || {
        cat "$work/$name.log" >&2
        exit 1
    }
    end=$EPOCHREALTIME
    crates=$(grep -c '^ *Compiling ' "$work/$name.log" || true)
    seconds=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", e - s }')
    results+=("$(printf '%-8s %7s s  %4s crates compiled' "$name" "$seconds" "$crates")")
done

echo "cold \`cargo build -p xtask\` (debug) of a consumer workspace, $(nproc) cores:"
printf '  %s\n' "${results[@]}"
