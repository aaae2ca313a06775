//! Canonical paths of many files at the cost of a few: which linted files lie in a directory
//! (the data migrations, the migrations directory) is asked of every file, and resolving each
//! one from the root costs a system call per component. A file's parent directory is resolved
//! once for all the files in it; only a file that is itself a symbolic link is resolved alone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Default)]
pub struct CanonicalPaths {
    dirs: HashMap<PathBuf, Option<PathBuf>>,
}

impl CanonicalPaths {
    /// What `path.canonicalize()` gives, or `None` where it fails (a file that does not exist).
    pub fn get(&mut self, path: &Path) -> Option<PathBuf> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return path.canonicalize().ok();
        };
        if meta.file_type().is_symlink() {
            return path.canonicalize().ok();
        }
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        let dir = match self.dirs.get(parent) {
            Some(dir) => dir.clone(),
            None => {
                let dir = parent.canonicalize().ok();
                self.dirs.insert(parent.to_path_buf(), dir.clone());
                dir
            }
        };
        Some(dir?.join(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_what_canonicalize_gives() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/V1__x.sql"), "").unwrap();
        std::fs::write(root.join("a/V2__y.sql"), "").unwrap();
        std::os::unix::fs::symlink(root.join("a/b"), root.join("link")).unwrap();
        std::os::unix::fs::symlink(root.join("a/V2__y.sql"), root.join("a/b/V3__z.sql")).unwrap();
        let mut paths = CanonicalPaths::default();
        for p in [
            "a/b/V1__x.sql",
            "a/V2__y.sql",
            "link/V1__x.sql",
            "a/b/../V2__y.sql",
            "a/b/V3__z.sql",
            "a/b",
            "a/b/..",
        ] {
            let path = root.join(p);
            assert_eq!(paths.get(&path), Some(path.canonicalize().unwrap()), "{p}");
        }
        assert_eq!(paths.get(&root.join("a/missing.sql")), None);
        assert_eq!(paths.get(&root.join("missing/V1__x.sql")), None);
    }
}
