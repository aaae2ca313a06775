//! Canonical paths of many files at the cost of a few system calls: which linted files lie in a
//! directory (the data migrations, the migrations directory) is asked of every file, and
//! resolving each one from the root costs a system call per component. A directory is resolved
//! from its parent's resolution (one `lstat` to see that it is not a symbolic link), so each
//! directory costs one call however deep it lies; a file costs one `lstat`, which also says
//! whether it is a directory, and is remembered for the other questions of the same command.
//! Only symbolic links are resolved by the system from the root.

use std::path::{Component, Path, PathBuf};

use rustc_hash::FxHashMap;

#[derive(Default)]
pub struct CanonicalPaths {
    dirs: FxHashMap<PathBuf, Option<PathBuf>>,
    files: FxHashMap<PathBuf, Entry>,
}

/// Paths a thread resolves at least, when [`CanonicalPaths::prefetch`] shares them out.
const PREFETCH_PER_THREAD: usize = 256;

/// What one path resolved to.
#[derive(Clone)]
struct Entry {
    /// `None` where `canonicalize` fails (nothing there).
    canonical: Option<PathBuf>,
    /// Whether it is a directory, or a link to one.
    dir: bool,
}

impl CanonicalPaths {
    /// What `path.canonicalize()` gives, or `None` where it fails (a file that does not exist).
    pub fn get(&mut self, path: &Path) -> Option<PathBuf> {
        self.entry(path).canonical
    }

    /// Whether `path` is a directory (following a symbolic link), as `metadata` says; `None`
    /// where there is nothing to read.
    pub fn is_dir(&mut self, path: &Path) -> Option<bool> {
        let entry = self.entry(path);
        entry.canonical.is_some().then_some(entry.dir)
    }

    /// Resolves `paths` ahead of the questions about them, on several threads when there are
    /// many: each path costs a system call that walks it from the root.
    pub fn prefetch(&mut self, paths: &[PathBuf]) {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(paths.len() / PREFETCH_PER_THREAD);
        if threads <= 1 {
            for path in paths {
                self.entry(path);
            }
            return;
        }
        let resolved: Vec<CanonicalPaths> = std::thread::scope(|scope| {
            let handles: Vec<_> = paths
                .chunks(paths.len().div_ceil(threads))
                .map(|chunk| {
                    scope.spawn(move || {
                        let mut part = CanonicalPaths::default();
                        for path in chunk {
                            part.entry(path);
                        }
                        part
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        for part in resolved {
            self.dirs.extend(part.dirs);
            self.files.extend(part.files);
        }
    }

    fn entry(&mut self, path: &Path) -> Entry {
        if let Some(entry) = self.files.get(path) {
            return entry.clone();
        }
        let entry = self.resolve(path);
        self.files.insert(path.to_path_buf(), entry.clone());
        entry
    }

    fn resolve(&mut self, path: &Path) -> Entry {
        let missing = Entry {
            canonical: None,
            dir: false,
        };
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return missing;
        };
        if meta.file_type().is_symlink() {
            return match std::fs::metadata(path) {
                Ok(target) => Entry {
                    canonical: path.canonicalize().ok(),
                    dir: target.is_dir(),
                },
                Err(_) => missing,
            };
        }
        let canonical = match (path.parent(), path.components().next_back()) {
            (Some(parent), Some(Component::Normal(name))) => self.dir(parent).map(|d| d.join(name)),
            _ => path.canonicalize().ok(),
        };
        Entry {
            canonical,
            dir: meta.is_dir(),
        }
    }

    /// The canonical form of the directory `dir`, from its parent's.
    fn dir(&mut self, dir: &Path) -> Option<PathBuf> {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Some(resolved) = self.dirs.get(dir) {
            return resolved.clone();
        }
        let resolved = match (dir.parent(), dir.components().next_back()) {
            (Some(parent), Some(Component::Normal(name))) => match std::fs::symlink_metadata(dir) {
                Ok(meta) if meta.is_dir() => self.dir(parent).map(|p| p.join(name)),
                // A symbolic link: the system resolves it.
                Ok(_) => dir.canonicalize().ok(),
                Err(_) => None,
            },
            // The root, `.`, `..`: few, and resolved by the system.
            _ => dir.canonicalize().ok(),
        };
        self.dirs.insert(dir.to_path_buf(), resolved.clone());
        resolved
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
            "link",
            "link/../V2__y.sql",
            "a/./b/V1__x.sql",
        ] {
            let path = root.join(p);
            let expected = path.canonicalize().unwrap();
            assert_eq!(paths.get(&path), Some(expected.clone()), "{p}");
            // Asked again (remembered): the same answer.
            assert_eq!(paths.get(&path), Some(expected), "{p}");
            assert_eq!(
                paths.is_dir(&path),
                Some(std::fs::metadata(&path).unwrap().is_dir()),
                "{p}"
            );
        }
        assert_eq!(paths.get(&root.join("a/missing.sql")), None);
        assert_eq!(paths.get(&root.join("missing/V1__x.sql")), None);
        assert_eq!(paths.is_dir(&root.join("a/missing.sql")), None);
        // Resolved ahead by several threads: the same answers.
        let many: Vec<PathBuf> = (0..4 * PREFETCH_PER_THREAD)
            .map(|i| match i % 3 {
                0 => root.join("a/b/V1__x.sql"),
                1 => root.join(format!("link/missing{i}.sql")),
                _ => root.join("a/b/V3__z.sql"),
            })
            .collect();
        let mut ahead = CanonicalPaths::default();
        ahead.prefetch(&many);
        for path in &many {
            assert_eq!(
                ahead.files.get(path).map(|e| e.canonical.clone()),
                Some(path.canonicalize().ok())
            );
        }
        // A dangling link resolves to nothing, as `canonicalize` says.
        std::os::unix::fs::symlink(root.join("nowhere"), root.join("a/dangling.sql")).unwrap();
        assert_eq!(paths.get(&root.join("a/dangling.sql")), None);
    }
}
