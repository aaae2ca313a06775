//! Secrets the process has seen (the password of a database URL), and the one function that
//! takes them out of text before it leaves the process.
//!
//! A secret is registered where it enters (parsing a database URL); text is scrubbed where it
//! leaves: every [`crate::backfill::Error`] message when it is made, every progress line, and the
//! command line's final error line. So a password that a driver echoes in an error, or that a
//! message picks up by accident, never reaches a terminal, a log, a plan file or a tracking row,
//! whichever path the text took.

use std::sync::Mutex;

static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Passwords shorter than this are not scrubbed from free text: masking every `p` or `ab` in
/// every message would make all output unreadable without hiding anything (such a password is
/// guessed faster than read). The URL itself is still shown without its password, whatever its
/// length (`db::postgres::redact_url`, `db::target::Target::info`).
pub const MIN_LEN: usize = 4;

/// Remembers `secret` (and its percent-encoded spelling) for [`scrub`]. Secrets shorter than
/// [`MIN_LEN`] are ignored.
pub fn register(secret: &str) {
    if secret.chars().count() < MIN_LEN {
        return;
    }
    let mut secrets = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    for spelling in [secret.to_string(), percent_encode(secret)] {
        if !secrets.contains(&spelling) {
            secrets.push(spelling);
        }
    }
    // Longest first, so a secret that contains another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// `text` with every registered secret replaced by `***`.
pub fn scrub(text: &str) -> String {
    let secrets = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = text.to_string();
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "***");
        }
    }
    out
}

/// `text` as it appears percent-encoded in a URL (unreserved characters kept).
pub(crate) fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_scrubbed_in_every_spelling() {
        register("s3cr@t-for-scrub-test");
        assert_eq!(
            scrub("failed for s3cr@t-for-scrub-test and s3cr%40t-for-scrub-test"),
            "failed for *** and ***"
        );
        register("");
        register("to");
        assert_eq!(scrub("nothing to hide"), "nothing to hide");
    }
}
