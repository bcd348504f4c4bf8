//! Decoding PEM text into the DER types rustls consumes.

use std::io::BufReader;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// Decodes every CERTIFICATE block of `pem`; `what` names the material in errors.
pub(crate) fn certs(
    pem: &str,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut BufReader::new(pem.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem { what, source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what });
    }
    Ok(certs)
}

/// Decodes the first private key block of `pem`.
pub(crate) fn private_key(
    pem: &str,
    what: &'static str,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut BufReader::new(pem.as_bytes()))
        .map_err(|source| TlsError::Pem { what, source })?
        .ok_or(TlsError::NoPrivateKey { what })
}

/// A root store holding only the cluster CA: nothing else is ever trusted.
pub(crate) fn cluster_roots(ca_pem: &str) -> Result<RootCertStore, TlsError> {
    let what = "cluster CA certificate";
    let mut roots = RootCertStore::empty();
    for cert in certs(ca_pem, what)? {
        roots
            .add(cert)
            .map_err(|source| TlsError::Rustls { what, source })?;
    }
    Ok(roots)
}
