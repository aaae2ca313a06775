//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

/// The standalone binary (`src/main.rs`): the same commands `cargo xtask` runs.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_xtask-migrate"))
}

/// Writes `text` to `path`, creating parent directories.
pub fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

/// Copies `from` (files and directories) into `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}
