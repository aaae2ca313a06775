//! PII scrubbing: which columns look personal, and what a policy makes of a value.
//!
//! Default-deny: a text-like column whose name looks personal ([`looks_personal`]) and has no
//! policy stops the capture before a row is read; a kept text column whose values look like an
//! email or IP address stops it after reading ([`looks_personal_value`]), before anything
//! replaces `fixtures/`. Fakes and HMACs are deterministic: the same value gives the same output
//! on every capture, so unique values stay unique (with overwhelming probability) and joins on
//! hashed keys hold.

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use super::settings::{FakeKind, Policy};

/// Words of a column name that mark it as personal: the name is split at `_`, `-` and case
/// changes, and one word (or the whole name) matching is enough.
const PERSONAL_WORDS: &[&str] = &[
    "email",
    "mail",
    "name",
    "firstname",
    "lastname",
    "fullname",
    "surname",
    "username",
    "nickname",
    "login",
    "handle",
    "phone",
    "mobile",
    "tel",
    "fax",
    "address",
    "addr",
    "street",
    "zip",
    "postcode",
    "postal",
    "ip",
    "ipaddr",
    "ipaddress",
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "salt",
    "ssn",
    "sin",
    "birth",
    "birthday",
    "birthdate",
    "dob",
    "iban",
    "card",
    "passport",
    "license",
    "licence",
    "apikey",
    "otp",
    "geo",
    "latitude",
    "longitude",
];

/// Whether a column called `name` looks like it holds personal data.
pub fn looks_personal(name: &str) -> bool {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        if c == '_' || c == '-' || c == ' ' || c == '.' {
            words.push(std::mem::take(&mut word));
            previous_lower = false;
            continue;
        }
        if c.is_uppercase() && previous_lower {
            words.push(std::mem::take(&mut word));
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
        word.extend(c.to_lowercase());
    }
    words.push(word);
    let whole: String = name
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect();
    words.push(whole);
    words
        .iter()
        .any(|w| !w.is_empty() && PERSONAL_WORDS.contains(&w.as_str()))
}

/// Whether a value looks like an email address or an IP address somewhere in it.
pub fn looks_personal_value(value: &str) -> bool {
    value
        .split(|c: char| c.is_whitespace() || "<>()[]{},;:\"'".contains(c))
        .any(|token| is_email(token) || is_ipv4(token))
}

fn is_email(token: &str) -> bool {
    let token = token.trim_end_matches('.');
    let Some((local, domain)) = token.split_once('@') else {
        return false;
    };
    let Some((host, tld)) = domain.rsplit_once('.') else {
        return false;
    };
    !local.is_empty()
        && !host.is_empty()
        && !domain.contains('@')
        && tld.len() >= 2
        && tld.chars().all(|c| c.is_ascii_alphabetic())
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

fn is_ipv4(token: &str) -> bool {
    let token = token.split('/').next().unwrap_or("");
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) && {
                p.parse::<u16>().is_ok_and(|n| n <= 255)
            }
        })
}

/// HMAC-SHA-256 of `value` under `key`.
pub fn hmac(key: &[u8], value: &[u8]) -> [u8; 32] {
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .expect("HMAC takes a key of any length");
    mac.update(value);
    mac.finalize().into_bytes().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Turns values into their scrubbed form, for one capture.
pub struct Scrubber {
    /// The `hmac` policy's key, when one is configured.
    hmac_key: Option<Vec<u8>>,
    /// The key fakes are derived with: the HMAC key when there is one, else the seed (a fake
    /// carries a few bits of its input at most).
    fake_key: Vec<u8>,
}

impl Scrubber {
    pub fn new(hmac_key: Option<Vec<u8>>, seed: u64) -> Scrubber {
        let fake_key = hmac_key
            .clone()
            .unwrap_or_else(|| format!("xtask-capture-fake-{seed}").into_bytes());
        Scrubber { hmac_key, fake_key }
    }

    /// The value `policy` makes of `value` (a column's text form; `None` is NULL).
    pub fn apply(&self, policy: &Policy, value: Option<&str>) -> Option<String> {
        let value = value?;
        match policy {
            Policy::Keep => Some(value.to_string()),
            Policy::Null => None,
            Policy::Constant(constant) => Some(constant.clone()),
            Policy::Hmac => {
                let key = self
                    .hmac_key
                    .as_deref()
                    .expect("the hmac policy is refused without a key");
                Some(hex(&hmac(key, value.as_bytes())))
            }
            Policy::Fake(kind) => {
                let digest = hmac(&self.fake_key, value.as_bytes());
                Some(fake(*kind, &digest, value))
            }
        }
    }
}

const FIRST: &[&str] = &[
    "Alex", "Blake", "Casey", "Dana", "Eli", "Frankie", "Gray", "Harper", "Indy", "Jordan", "Kai",
    "Logan", "Morgan", "Noa", "Oakley", "Parker", "Quinn", "Riley", "Sage", "Taylor", "Uma", "Vic",
    "Wren", "Yael", "Zoë",
];
const LAST: &[&str] = &[
    "Abbott",
    "Brook",
    "Castillo",
    "Dietrich",
    "Eriksen",
    "Fontaine",
    "García",
    "Hughes",
    "Ito",
    "Jansen",
    "Kowalski",
    "Lindqvist",
    "Moreau",
    "Nakamura",
    "O'Brien",
    "Petrov",
    "Quispe",
    "Rossi",
    "Silva",
    "Tanaka",
    "Urban",
    "Varga",
    "Weber",
    "Xu",
    "Young",
];
const STREETS: &[&str] = &[
    "Elm", "Oak", "Maple", "Cedar", "Birch", "Willow", "Aspen", "Pine", "Spruce", "Laurel",
];
const SUFFIXES: &[&str] = &["Street", "Avenue", "Road", "Lane", "Way", "Court"];
const WORDS: &[&str] = &[
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
];

/// A deterministic fake of `kind` from `digest` (the keyed hash of the original `value`).
fn fake(kind: FakeKind, digest: &[u8; 32], value: &str) -> String {
    let pick = |i: usize, list: &[&'static str]| list[usize::from(digest[i]) % list.len()];
    match kind {
        FakeKind::Email => format!("user-{}@example.com", hex(&digest[..6])),
        FakeKind::Username => format!("user_{}", hex(&digest[..6])),
        FakeKind::Name => format!("{} {}", pick(0, FIRST), pick(1, LAST)),
        // 555-01xx numbers are reserved for fiction.
        FakeKind::Phone => format!("+1 555 01{:02}", digest[2] % 100),
        FakeKind::Address => format!(
            "{} {} {}",
            1 + u16::from_be_bytes([digest[3], digest[4]]) % 9999,
            pick(5, STREETS),
            pick(6, SUFFIXES)
        ),
        // The documentation ranges (RFC 5737): routed nowhere.
        FakeKind::Ip => {
            let prefix = ["192.0.2", "198.51.100", "203.0.113"][usize::from(digest[7]) % 3];
            format!("{prefix}.{}", 1 + digest[8] % 254)
        }
        FakeKind::Text => {
            let length = value.chars().count();
            let mut out = String::with_capacity(length);
            let mut i = 0usize;
            while out.chars().count() < length {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(WORDS[usize::from(digest[i % 32]) % WORDS.len()]);
                i += 1;
            }
            out.chars().take(length).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_names() {
        for name in [
            "email",
            "user_email",
            "display_name",
            "firstName",
            "phone_number",
            "ip",
            "last_login_ip",
            "api_token",
            "password_digest",
            "ssn",
            "date_of_birth",
            "birthdate",
            "home-address",
            "handle",
            "EmailAddress",
        ] {
            assert!(looks_personal(name), "{name}");
        }
        for name in [
            "id",
            "body",
            "created_at",
            "followers_count",
            "author_id",
            "title",
            "shipping_state",
            "description",
            "tip",
            "zipper_count_x",
        ] {
            assert!(!looks_personal(name), "{name}");
        }
    }

    #[test]
    fn personal_values() {
        assert!(looks_personal_value("write to ana@example.org please"));
        assert!(looks_personal_value("<bob.smith@mail.co.uk>"));
        assert!(looks_personal_value("from 10.0.0.12 at noon"));
        assert!(!looks_personal_value(
            "Post 12, with a comma and a \"quote\""
        ));
        assert!(!looks_personal_value("version 1.2.3 @ noon"));
        assert!(!looks_personal_value("1.2.3.999"));
        assert!(!looks_personal_value("@handle"));
    }

    /// RFC 4231, test case 2.
    #[test]
    fn hmac_sha256_matches_the_rfc() {
        assert_eq!(
            hex(&hmac(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn policies_are_deterministic_and_keep_nulls() {
        let s = Scrubber::new(Some(b"k3y".to_vec()), 1);
        let email = Policy::Fake(FakeKind::Email);
        let a = s.apply(&email, Some("ana@corp.example")).unwrap();
        assert_eq!(s.apply(&email, Some("ana@corp.example")).unwrap(), a);
        assert_ne!(s.apply(&email, Some("bob@corp.example")).unwrap(), a);
        assert!(a.ends_with("@example.com") && !a.contains("ana"), "{a}");
        assert_eq!(s.apply(&email, None), None);
        assert_eq!(s.apply(&Policy::Null, Some("x")), None);
        assert_eq!(
            s.apply(&Policy::Constant("c".into()), Some("x")).as_deref(),
            Some("c")
        );
        assert_eq!(s.apply(&Policy::Keep, Some("x")).as_deref(), Some("x"));
        let h = s.apply(&Policy::Hmac, Some("x")).unwrap();
        assert_eq!(h.len(), 64);
        assert_eq!(h, hex(&hmac(b"k3y", b"x")));
        let other = Scrubber::new(Some(b"other".to_vec()), 1);
        assert_ne!(other.apply(&Policy::Hmac, Some("x")).unwrap(), h);
        for kind in FakeKind::ALL {
            let value = "Zoë Ångström, 12 Secret Lane, 10.1.2.3";
            let out = s.apply(&Policy::Fake(kind), Some(value)).unwrap();
            assert!(
                !out.contains("Secret") && !out.contains("10.1.2.3"),
                "{out}"
            );
            if kind == FakeKind::Text {
                assert_eq!(out.chars().count(), value.chars().count(), "{out}");
            }
        }
        assert_eq!(
            s.apply(&Policy::Fake(FakeKind::Text), Some("")).as_deref(),
            Some("")
        );
    }
}
