//! rustls server configuration from PEM files, with ALPN for h2 and HTTP/1.1, session
//! resumption by stateless tickets, and a certificate a reload can replace.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{0}: no PEM certificate found")]
    NoCertificate(String),
    /// The key file holds no private key.
    #[error("{0}: no PEM private key found")]
    NoKey(String),
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("certificate and key do not work together: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The ring crypto provider, chosen once for every rustls config in the process.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain.
///
/// # Errors
/// [`TlsError::Read`] or [`TlsError::NoCertificate`].
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Read {
            path: path.display().to_string(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.display().to_string()));
    }
    Ok(certs)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The certificate chain in `cert` with the private key in `key`, checked to belong
/// together.
///
/// # Errors
/// Any [`TlsError`]: a file unreadable or without PEM, a key rustls cannot use, or a key
/// that is not the certificate's.
pub fn certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let certs = read_certs(cert)?;
    let key_pem = read(key)?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|source| TlsError::Read {
            path: key.display().to_string(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey(key.display().to_string()))?;
    Ok(Arc::new(CertifiedKey::from_der(certs, key, &provider())?))
}

/// The certificate the HTTPS listener presents: swapped whole by a reload (new files at
/// the same paths, as a renewal writes them), while connections in progress keep the one
/// they started with.
#[derive(Debug)]
pub struct Certificate {
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificate {
    /// Presents `key` until [`Certificate::replace`].
    pub fn new(key: Arc<CertifiedKey>) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(key),
        })
    }

    /// Presents `key` to every handshake from now on.
    pub fn replace(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = key;
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// A server config presenting `certificate`, offering h2 then HTTP/1.1. Returning clients
/// (a player fetching its next segment on a new connection) resume their TLS session from
/// a ticket rather than pay a full handshake: tickets are sealed with keys that rotate every
/// six hours and live only in this process's memory, so no ticket survives a restart.
///
/// # Errors
/// When rustls cannot make its ticketer.
pub fn server_config(certificate: Arc<Certificate>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(certificate);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(Arc::new(config))
}
