//! nginx `secure_link` links (`secure_link_md5`): the MD5 of an expression such as
//! `$secure_link_expires$uri$remote_addr secret`, base64url without padding, carried as
//! `?md5=<hash>&expires=<unix>`. usher mints them into playlists so a CDN (or nginx) that
//! validates segments itself can sit behind or in front of it with the same secret.

use std::net::IpAddr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

use super::TicketError;

/// The expression nginx hashes, with its variables: `$secure_link_expires`, `$uri`,
/// `$remote_addr`, and `$secret` for the configured secret (so the secret itself need not
/// sit in the expression text).
#[derive(Clone)]
pub struct Expression {
    template: String,
    secret: String,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expression").finish_non_exhaustive()
    }
}

impl Expression {
    /// An expression from its template and secret.
    pub fn new(template: &str, secret: &str) -> Self {
        Self {
            template: template.to_owned(),
            secret: secret.to_owned(),
        }
    }

    /// The expression with its variables substituted in one pass over the template, so a
    /// `$` inside a value (a URI with `$secret` in it) is never substituted again.
    fn fill(&self, uri: &str, expires: u64, client: Option<IpAddr>) -> String {
        let expires = expires.to_string();
        let client = client.map(|c| c.to_string()).unwrap_or_default();
        let variables: [(&str, &str); 4] = [
            ("$secure_link_expires", &expires),
            ("$remote_addr", &client),
            ("$secret", &self.secret),
            ("$uri", uri),
        ];
        let mut out = String::with_capacity(self.template.len() + uri.len() + 32);
        let mut rest = self.template.as_str();
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let tail = &rest[at..];
            match variables.iter().find(|(name, _)| tail.starts_with(name)) {
                Some((name, value)) => {
                    out.push_str(value);
                    rest = &tail[name.len()..];
                }
                None => {
                    out.push('$');
                    rest = &tail[1..];
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// Whether the expression binds links to the client's address (`$remote_addr`).
    pub fn binds_address(&self) -> bool {
        self.template.contains("$remote_addr")
    }

    /// The hash for `uri` valid until `expires`, as nginx computes it.
    pub fn hash(&self, uri: &str, expires: u64, client: Option<IpAddr>) -> String {
        let digest = Md5::digest(self.fill(uri, expires, client).as_bytes());
        URL_SAFE_NO_PAD.encode(digest)
    }

    /// The query string that opens `uri` until `expires`: `md5=…&expires=…`.
    pub fn query(&self, uri: &str, expires: u64, client: Option<IpAddr>) -> String {
        format!("md5={}&expires={expires}", self.hash(uri, expires, client))
    }

    /// Checks a link's `md5` and `expires` for `uri` at `now`.
    ///
    /// # Errors
    /// `Malformed` (expires not a number), `BadSignature`, `Expired`.
    pub fn verify(
        &self,
        uri: &str,
        md5: &str,
        expires: &str,
        client: Option<IpAddr>,
        now: u64,
    ) -> Result<(), TicketError> {
        let expires: u64 = expires.parse().map_err(|_| TicketError::Malformed)?;
        let expected = self.hash(uri, expires, client);
        if !bool::from(expected.as_bytes().ct_eq(md5.as_bytes())) {
            return Err(TicketError::BadSignature);
        }
        if now >= expires {
            return Err(TicketError::Expired { at: expires });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_as_nginx_documents() {
        // python3: base64.urlsafe_b64encode(md5(b"1700003600/vod/seg1.ts secret")).rstrip("=")
        let e = Expression::new("$secure_link_expires$uri $secret", "secret");
        assert_eq!(
            e.hash("/vod/seg1.ts", 1_700_003_600, None),
            "-T9nlsxTii3JcceLH9niBQ"
        );
        assert_eq!(
            e.query("/vod/seg1.ts", 1_700_003_600, None),
            "md5=-T9nlsxTii3JcceLH9niBQ&expires=1700003600"
        );
    }

    #[test]
    fn a_dollar_in_the_uri_is_not_substituted() {
        let e = Expression::new("$uri $secret", "s");
        assert_eq!(e.fill("/a$secret.ts", 1, None), "/a$secret.ts s");
    }

    #[test]
    fn verifies_and_refuses() {
        let e = Expression::new("$secure_link_expires$uri$remote_addr $secret", "s3cr3t");
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let md5 = e.hash("/a.ts", 100, Some(ip));
        assert_eq!(e.verify("/a.ts", &md5, "100", Some(ip), 99), Ok(()));
        assert_eq!(
            e.verify("/a.ts", &md5, "100", Some(ip), 100),
            Err(TicketError::Expired { at: 100 })
        );
        assert_eq!(
            e.verify("/b.ts", &md5, "100", Some(ip), 99),
            Err(TicketError::BadSignature)
        );
        assert_eq!(
            e.verify("/a.ts", &md5, "101", Some(ip), 99),
            Err(TicketError::BadSignature)
        );
        assert_eq!(
            e.verify("/a.ts", &md5, "100", None, 99),
            Err(TicketError::BadSignature)
        );
        assert_eq!(
            e.verify("/a.ts", &md5, "soon", Some(ip), 99),
            Err(TicketError::Malformed)
        );
    }
}
