//! What identifies a data migration: its version and name, from the file name by refinery's
//! rule, and the checksum of its bytes (approvals and runs are tied to it).

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::backfill::error::{Error, ErrorKind, Result};

/// `V{n}__{name}.sql` → `(n, name)`, refinery's rule (`name` in `\w+`).
pub fn parse_file_name(file_name: &str) -> Option<(u64, String)> {
    let stem = file_name.strip_suffix(".sql")?;
    let rest = stem.strip_prefix('V')?;
    let (version, name) = rest.split_once("__")?;
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let version = version.parse().ok()?;
    let word = |c: char| c.is_alphanumeric() || c == '_';
    if name.is_empty() || !name.chars().all(word) {
        return None;
    }
    Some((version, name.to_string()))
}

/// The version and name of the data migration at `path`, from its file name; an error naming
/// the file when refinery would not accept the name.
pub(super) fn version_and_name(path: &Path) -> Result<(u64, String)> {
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    parse_file_name(&file_name).ok_or_else(|| {
        Error::file(
            ErrorKind::Format,
            path,
            "not a data-migration name: expected `V{n}__{name}.sql` with `name` made of letters, digits and `_` (refinery's rule)",
        )
    })
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn checksum(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backfill::migration::example::GOOD;
    use crate::backfill::migration::parse;

    #[test]
    fn file_name_rules() {
        assert_eq!(
            parse_file_name("V12__fill_it.sql"),
            Some((12, "fill_it".into()))
        );
        assert_eq!(parse_file_name("V1__fill-it.sql"), None);
        assert_eq!(parse_file_name("V1_fill.sql"), None);
        assert_eq!(parse_file_name("U1__fill.sql"), None);
        assert_eq!(parse_file_name("V__fill.sql"), None);
        assert_eq!(parse_file_name("V1__fill.txt"), None);
        let e = parse(Path::new("dm/V1__fill-it.sql"), GOOD)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("dm/V1__fill-it.sql: not a data-migration name"),
            "{e}"
        );
    }

    #[test]
    fn checksum_is_sha256_of_the_bytes() {
        assert_eq!(
            checksum(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
