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

impl crate::config::Config {
    /// Settings that are valid but may not do what the operator meant (`usher
    /// check-config` prints them; start-up logs them).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = self.rights.warnings();
        if let Some(listen) = self.admin.listen.filter(|a| !a.ip().is_loopback()) {
            warnings.push(format!(
                "admin.listen = {listen} is not a loopback address: the admin API, its \
                 credentials (sent in the clear over HTTP) and /metrics are reachable from the \
                 network; keep it on 127.0.0.1 unless a firewall or a TLS proxy guards it"
            ));
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, env: &str) -> CredentialFile {
        CredentialFile {
            name: name.to_owned(),
            token_env: env.to_owned(),
        }
    }

    #[test]
    fn credentials_are_named_unique_and_read_from_the_environment() {
        std::env::set_var("USHER_CHECK_ADMIN_A", "token-a-0123456789");
        std::env::set_var("USHER_CHECK_ADMIN_SHORT", "short");
        let mut p = Problems::default();
        let got = credentials(
            &mut p,
            vec![
                entry("billing", "USHER_CHECK_ADMIN_A"),
                entry("admin", "USHER_CHECK_ADMIN_A"),
                entry("Bad Name", "USHER_CHECK_ADMIN_A"),
                entry("crm", "USHER_CHECK_ADMIN_SHORT"),
                entry("crm2", "USHER_CHECK_ADMIN_UNSET_X"),
                entry("again", "USHER_CHECK_ADMIN_A"),
            ],
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "billing");
        assert!(
            !format!("{got:?}").contains("token-a"),
            "Debug hides the token"
        );
        let keys: Vec<&str> = p.0.iter().map(|m| m.split(' ').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "admin.credentials[1].name",
                "admin.credentials[2].name",
                "admin.credentials[3].token_env",
                "admin.credentials[4].token_env",
                "admin.credentials[5].token_env",
            ]
        );
    }
}
