//! The TLS client settings connectors share: which CAs a server's
//! certificate must chain to (a file the connector names, `SSL_CERT_FILE`,
//! or the system's bundle), and whether its name must match the host
//! asked for. rustls with ring, as everywhere in Sluice. A connector never
//! connects to a server whose certificate it did not check.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

/// Largest CA bundle read (Debian's is about 200 KiB).
const CA_BUNDLE_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// Where Linux distributions keep the system's CA bundle, in the order
/// looked at (after `SSL_CERT_FILE`).
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// What a server's certificate is checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// It chains to a trusted CA and names the host connected to.
    ChainAndName,
    /// It chains to a trusted CA; its names are not compared with the
    /// host (PostgreSQL's `sslmode=verify-ca`, for servers reached by an
    /// address their certificate does not list).
    ChainOnly,
}

/// Client settings trusting the CAs of `ca_file` (else `SSL_CERT_FILE`,
/// else the system's bundle); `hint` says how the connector's file names
/// a CA file, for the error when none is found.
pub fn client_config(
    ca_file: Option<&Path>,
    check: Check,
    hint: &str,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let roots = Arc::new(roots(ca_file, hint)?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?;
    let config = match check {
        Check::ChainAndName => builder.with_root_certificates(roots),
        Check::ChainOnly => {
            let full = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .context("a certificate verifier for the CA file")?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(full)))
        }
    };
    Ok(Arc::new(config.with_no_client_auth()))
}

/// The CAs of `ca_file`, `SSL_CERT_FILE` or the system's bundle.
fn roots(ca_file: Option<&Path>, hint: &str) -> anyhow::Result<rustls::RootCertStore> {
    use rustls::pki_types::pem::PemObject;
    let env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let path = match (ca_file, env) {
        (Some(path), _) => path.to_path_buf(),
        (None, Some(path)) => path,
        (None, None) => SYSTEM_CA_BUNDLES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .with_context(|| {
                format!(
                    "no CA bundle found at {}; {hint} (or set SSL_CERT_FILE) to a PEM file of the CAs to trust",
                    SYSTEM_CA_BUNDLES.join(", ")
                )
            })?,
    };
    let pem = crate::small_file::read(&path, CA_BUNDLE_BYTES_MAX, "CA bundle")?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert =
            cert.with_context(|| format!("{} is not a PEM file of certificates", path.display()))?;
        roots.add(cert).with_context(|| {
            format!(
                "{} holds a certificate that is not a CA rustls takes",
                path.display()
            )
        })?;
    }
    if roots.is_empty() {
        bail!("{} holds no certificate", path.display());
    }
    Ok(roots)
}

/// [`Check::ChainOnly`]: rustls's own verifier, whose verdict is taken
/// whole but for a certificate that names another host.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            verdict => verdict,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
