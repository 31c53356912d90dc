//! TLS with rustls: certificates from PEM files, or self-signed for
//! development. rustls speaks TLS 1.2 and 1.3 only, which is the floor we
//! want; no protocol version option is needed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsSource;

/// A certificate or key that cannot serve; start-up stops on it.
#[derive(Debug, Error)]
pub enum TlsError {
    /// The file is missing or unreadable.
    #[error("cannot read {what} file {path}: {source}")]
    Unreadable {
        /// "certificate" or "private key".
        what: &'static str,
        /// The file given.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds no usable PEM item of the expected kind.
    #[error("{what} file {path} is not valid: {message}")]
    Invalid {
        /// "certificate" or "private key".
        what: &'static str,
        /// The file given.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// rustls refused the pair (typically: the key does not match the cert).
    #[error("certificate {cert} and key {key} do not work together: {source}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// Generating the development certificate failed.
    #[error("cannot generate a self-signed certificate: {0}")]
    SelfSigned(String),
}

/// Builds the TLS acceptor for `source`.
///
/// # Errors
/// [`TlsError`], naming the file and the problem.
pub fn acceptor(source: &TlsSource) -> Result<TlsAcceptor, TlsError> {
    let (certs, key, names) = match source {
        TlsSource::Files { cert, key } => (load_certs(cert)?, load_key(key)?, Some((cert.clone(), key.clone()))),
        TlsSource::SelfSigned => {
            let (certs, key) = self_signed()?;
            (certs, key, None)
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::SelfSigned(e.to_string()))?
        .with_no_client_auth();
    let mut config = builder.with_single_cert(certs, key).map_err(|source| {
        let (cert, key) = names.clone().unwrap_or_default();
        TlsError::Mismatch { cert, key, source }
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Unreadable {
        what,
        path: path.to_owned(),
        source,
    })
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read("certificate", path)?;
    let invalid = |message: String| TlsError::Invalid {
        what: "certificate",
        path: path.to_owned(),
        message,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(e.to_string()))?;
    if certs.is_empty() {
        return Err(invalid("no CERTIFICATE block found".into()));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("private key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Invalid {
        what: "private key",
        path: path.to_owned(),
        message: format!("no usable PRIVATE KEY block ({e})"),
    })
}

/// A certificate for localhost, 127.0.0.1 and ::1 (development only).
pub fn self_signed() -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::SelfSigned(e.to_string()))?;
    let key =
        PrivateKeyDer::try_from(certified.key_pair.serialize_der()).map_err(|e| TlsError::SelfSigned(e.to_string()))?;
    Ok((vec![certified.cert.der().clone()], key))
}
