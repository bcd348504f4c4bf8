//! Decoding PEM text into the DER types rustls consumes.

use rustls::RootCertStore;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// Decodes every CERTIFICATE block of `pem`; `what` names the material in errors.
pub(crate) fn certs(
    pem: &str,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
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
    match PrivateKeyDer::from_pem_slice(pem.as_bytes()) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(TlsError::NoPrivateKey { what }),
        Err(source) => Err(TlsError::Pem { what, source }),
    }
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
