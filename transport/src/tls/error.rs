//! Errors raised while creating, storing, loading and using TLS material.

use std::path::PathBuf;

/// Everything that can go wrong with the cluster CA, node certificates and the
/// rustls/quinn configurations built from them.
///
/// Each variant names the file or the piece of material it concerns so that an
/// operator can tell which of several certificates is at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Key generation or self-signing of the cluster CA failed.
    #[error(
        "could not generate the certificate authority for cluster `{cluster_id}`: {source}; \
         check that the cluster id is printable text"
    )]
    GenerateCa {
        /// Cluster whose CA was being generated.
        cluster_id: String,
        /// What rcgen reported.
        #[source]
        source: rcgen::Error,
    },

    /// A CA was requested for an empty cluster id.
    #[error("cannot generate a cluster CA for an empty cluster id; pass the cluster's id")]
    EmptyClusterId,

    /// Issuing a leaf certificate failed (for instance the name is not a valid DNS name).
    #[error(
        "could not issue a certificate for `{name}`: {source}; \
         node names must be valid DNS names (letters, digits, '-' and '.')"
    )]
    Issue {
        /// Name the certificate was requested for.
        name: String,
        /// What rcgen reported.
        #[source]
        source: rcgen::Error,
    },

    /// A client certificate was asked for a name no principal can have.
    #[error("cannot issue a client certificate: {reason}")]
    InvalidPrincipal {
        /// What is wrong with the name.
        reason: String,
    },

    /// A file could not be read.
    #[error(
        "could not read {path}: {source}; check that the path is right and readable \
         (generate the cluster CA and node certificates first if they do not exist)"
    )]
    ReadFile {
        /// File that could not be read.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A file or its directory could not be written.
    #[error("could not write {path}: {source}; check that the directory exists and is writable")]
    WriteFile {
        /// File (or directory) that could not be written.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A private key file could not be parsed.
    #[error(
        "{path} does not hold a usable private key: {source}; \
         it must be a PEM-encoded PKCS#8 ECDSA key as written by Sluice"
    )]
    ParseKeyFile {
        /// Offending key file.
        path: PathBuf,
        /// What rcgen reported.
        #[source]
        source: rcgen::Error,
    },

    /// A certificate file holds no PEM certificate.
    #[error(
        "{path} does not hold a PEM certificate; \
         it must be the `.pem` file written next to the matching `.key`"
    )]
    ParseCertFile {
        /// Offending certificate file.
        path: PathBuf,
    },

    /// The CA certificate file is not a certificate this crate can use as an issuer.
    #[error(
        "{path} is not a usable CA certificate ({reason}); \
         it must be the `ca.pem` written by Sluice when the cluster CA was generated"
    )]
    MalformedCaCert {
        /// Offending certificate file.
        path: PathBuf,
        /// Which structural check failed.
        reason: &'static str,
    },

    /// The CA private key does not belong to the CA certificate next to it.
    #[error(
        "the private key in {key_path} does not belong to the certificate in {cert_path}; \
         restore the matching pair or generate a new cluster CA"
    )]
    KeyMismatch {
        /// The certificate file.
        cert_path: PathBuf,
        /// The key file.
        key_path: PathBuf,
    },

    /// PEM text could not be decoded.
    #[error("the {what} is not valid PEM: {source}; pass the PEM text exactly as it was written")]
    Pem {
        /// Which piece of material was being decoded (e.g. "cluster CA certificate").
        what: &'static str,
        /// What the PEM decoder reported.
        #[source]
        source: rustls::pki_types::pem::Error,
    },

    /// PEM text decoded fine but held no certificate.
    #[error("the {what} contains no CERTIFICATE block; pass a PEM certificate")]
    NoCertificate {
        /// Which piece of material was expected to hold a certificate.
        what: &'static str,
    },

    /// PEM text decoded fine but held no private key.
    #[error("the {what} contains no PRIVATE KEY block; pass a PEM private key")]
    NoPrivateKey {
        /// Which piece of material was expected to hold a key.
        what: &'static str,
    },

    /// rustls refused a certificate or key while building a configuration.
    #[error("rustls rejected the {what}: {source}; check that it was issued by the cluster CA")]
    Rustls {
        /// Which piece of material was rejected.
        what: &'static str,
        /// What rustls reported.
        #[source]
        source: rustls::Error,
    },

    /// The client-certificate verifier could not be built from the CA.
    #[error(
        "could not build the client-certificate verifier from the cluster CA: {source}; \
         check the CA certificate"
    )]
    ClientVerifier {
        /// What rustls reported.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },

    /// The crypto provider lacks the cipher suite QUIC needs for its initial packets.
    #[error(
        "the TLS crypto provider cannot be used for QUIC: {source}; \
         this is a build problem (the ring provider must be enabled)"
    )]
    QuicCrypto {
        /// What quinn reported.
        #[source]
        source: quinn::crypto::rustls::NoInitialCipherSuite,
    },
}
