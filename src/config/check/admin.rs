//! `[[admin.credentials]]`: named admin credentials, their tokens from the environment.

use super::Problems;
use crate::config::file::CredentialFile;
use crate::config::Credential;

/// Names usher gives itself in the audit trail: the main credential and SIGHUP.
const RESERVED: &[&str] = &["admin", "signal"];

/// Checks each entry: a name of 1–32 of `a-z 0-9 _ -`, unique and not reserved; a
/// `token_env` that is set to 16+ characters, a token no other credential has.
pub(super) fn credentials(p: &mut Problems, entries: Vec<CredentialFile>) -> Vec<Credential> {
    let mut out: Vec<Credential> = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let key = |field: &str| format!("admin.credentials[{i}].{field}");
        let name_ok = (1..=32).contains(&entry.name.len())
            && entry
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b));
        if !name_ok {
            p.add(&key("name"), &entry.name, "use 1-32 of a-z 0-9 _ -");
            continue;
        }
        if RESERVED.contains(&entry.name.as_str()) || out.iter().any(|c| c.name == entry.name) {
            p.add(
                &key("name"),
                &entry.name,
                "taken (admin and signal are usher's own; names are unique)",
            );
            continue;
        }
        let token = std::env::var(&entry.token_env).unwrap_or_default();
        if token.len() < 16 {
            p.add(
                &key("token_env"),
                &entry.token_env,
                "must name an environment variable holding at least 16 characters",
            );
            continue;
        }
        if out.iter().any(|c| c.token == token) {
            p.add(
                &key("token_env"),
                &entry.token_env,
                "holds the same token as another credential",
            );
            continue;
        }
        out.push(Credential {
            name: entry.name,
            token,
        });
    }
    out
}
