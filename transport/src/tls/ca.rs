//! The per-cluster certificate authority and the node/client certificates it issues.
//!
//! Every Sluice cluster has its own CA. Nodes and clients trust only that CA,
//! so a certificate from one cluster is useless against another, and no public
//! PKI is involved. Because clients always dial with the fixed server name
//! [`NODE_SERVER_NAME`], certificates do not need to track host names or IPs,
//! which change when nodes move; they carry them anyway for tools such as curl.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::string::{Ia5String, PrintableString};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use super::der::{self, TAG_IA5_STRING, TAG_PRINTABLE_STRING, TAG_UTF8_STRING};
use super::identity::{IdentityError, PeerIdentity, check_principal_name};
use super::{TlsError, files, pem};

/// The server name every client uses when connecting to a node, and which every
/// issued certificate carries as a DNS SAN.
pub const NODE_SERVER_NAME: &str = "sluice-node";

/// File name of the CA certificate inside a CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key inside a CA directory (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";

/// Organization written into every Sluice certificate's subject.
const ORGANIZATION: &str = "Sluice";
/// How long the CA stays valid, in years.
const CA_VALIDITY_YEARS: i32 = 20;
/// How long an issued certificate stays valid, in years.
const LEAF_VALIDITY_YEARS: i32 = 10;

/// A cluster's certificate authority: its certificate and signing key.
pub struct ClusterCa {
    cluster_id: String,
    cert_pem: String,
    /// The CA's own parameters; only the subject name and key-identifier
    /// method matter, as rcgen copies them into issued certificates.
    params: CertificateParams,
    key: KeyPair,
}

impl fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterCa")
            .field("cluster_id", &self.cluster_id)
            .finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// Generates a fresh self-signed ECDSA P-256 CA for `cluster_id`.
    ///
    /// The cluster id goes into the subject (as organizational unit and in the
    /// common name) so the CA can be recognised, and recovered by [`load`](Self::load).
    pub fn generate(cluster_id: &str) -> Result<Self, TlsError> {
        let fail = |source| TlsError::GenerateCa {
            cluster_id: cluster_id.to_owned(),
            source,
        };
        if cluster_id.trim().is_empty() {
            return Err(TlsError::EmptyClusterId);
        }
        let mut params = CertificateParams::default();
        params.distinguished_name =
            subject(cluster_id, &format!("Sluice CA for cluster {cluster_id}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_VALIDITY_YEARS);
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(fail)?;
        let cert = params.self_signed(&key).map_err(fail)?;
        Ok(Self {
            cluster_id: cluster_id.to_owned(),
            cert_pem: cert.pem(),
            params,
            key,
        })
    }

    /// The cluster this CA belongs to.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The CA certificate in PEM form: what every node and client must trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Writes `ca.pem` and `ca.key` (mode 0600) into `dir`, creating it if needed.
    /// Existing files are replaced.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<(), TlsError> {
        let dir = dir.as_ref();
        files::ensure_dir(dir)?;
        files::write_secret(&dir.join(CA_KEY_FILE), &self.key.serialize_pem())?;
        files::write_public(&dir.join(CA_CERT_FILE), &self.cert_pem)
    }

    /// Reads a CA written by [`save`](Self::save) from `dir`.
    ///
    /// Checks that the key belongs to the certificate, so a mixed-up pair is
    /// reported here rather than as mysterious handshake failures later.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, TlsError> {
        let dir = dir.as_ref();
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_pem = files::read_text(&cert_path)?;
        let key_pem = files::read_text(&key_path)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|source| TlsError::ParseKeyFile {
            path: key_path.clone(),
            source,
        })?;
        let malformed = |reason| TlsError::MalformedCaCert {
            path: cert_path.clone(),
            reason,
        };
        let cert_der = pem::certs(&cert_pem, "cluster CA certificate")
            .map_err(|_| malformed("no PEM CERTIFICATE block"))?
            .swap_remove(0);
        let parts = der::issuer_parts(&cert_der).map_err(malformed)?;
        if parts.spki != rcgen::PublicKeyData::subject_public_key_info(&key).as_slice() {
            return Err(TlsError::KeyMismatch {
                cert_path,
                key_path,
            });
        }
        let mut name = DistinguishedName::new();
        let mut cluster_id = None;
        for attr in &parts.subject {
            let ty = DnType::from_oid(&attr.oid);
            let value = dn_value(attr.tag, attr.value).map_err(malformed)?;
            if ty == DnType::OrganizationalUnitName
                && let DnValue::Utf8String(s) = &value
            {
                cluster_id = Some(s.clone());
            }
            name.push(ty, value);
        }
        // rcgen keys names by attribute type; a repeated type would be lost and
        // the issuer name of new certificates would no longer match.
        if name.iter().count() != parts.subject.len() {
            return Err(malformed("subject repeats an attribute type"));
        }
        let cluster_id = cluster_id.ok_or_else(|| malformed("subject carries no cluster id"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name;
        Ok(Self {
            cluster_id,
            cert_pem,
            params,
            key,
        })
    }

    /// Issues the certificate of node `id`: it names the node
    /// ([`PeerIdentity::Node`]) and is valid for server and client
    /// authentication, so one identity serves the node's listener and its
    /// outgoing connections. Its SANs are [`NODE_SERVER_NAME`], `localhost`,
    /// `node-<id>`, the identity URI, `dns_names` and `ips`: clients verify
    /// only [`NODE_SERVER_NAME`], the others describe where the node lives.
    pub fn issue_node(
        &self,
        id: u64,
        dns_names: &[&str],
        ips: &[IpAddr],
    ) -> Result<CertKeyPair, TlsError> {
        let name = format!("node-{id}");
        let fail = |source| TlsError::Issue {
            name: name.clone(),
            source,
        };
        let mut sans = node_alt_names(&name, dns_names, ips).map_err(fail)?;
        sans.push(identity_san(&PeerIdentity::Node(id)).map_err(fail)?);
        self.sign(
            &name,
            sans,
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )
    }

    /// Issues a client certificate for principal `name` (what ACLs grant
    /// permissions to). Client authentication only, and no server name: it
    /// cannot pose as a node, to clients or to other nodes.
    pub fn issue_client(&self, name: &str) -> Result<CertKeyPair, TlsError> {
        check_principal_name(name).map_err(|reason| TlsError::InvalidPrincipal { reason })?;
        let fail = |source| TlsError::Issue {
            name: name.to_owned(),
            source,
        };
        let identity = PeerIdentity::Client(name.to_owned());
        let sans = vec![identity_san(&identity).map_err(fail)?];
        self.sign(name, sans, vec![ExtendedKeyUsagePurpose::ClientAuth])
    }

    fn sign(
        &self,
        common_name: &str,
        sans: Vec<SanType>,
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> Result<CertKeyPair, TlsError> {
        let fail = |source| TlsError::Issue {
            name: common_name.to_owned(),
            source,
        };
        let mut params = CertificateParams::default();
        params.distinguished_name = subject(&self.cluster_id, common_name);
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages;
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, LEAF_VALIDITY_YEARS);
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(fail)?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).map_err(fail)?;
        Ok(CertKeyPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The subjectAltName URI naming `identity`.
fn identity_san(identity: &PeerIdentity) -> Result<SanType, rcgen::Error> {
    Ok(SanType::URI(Ia5String::try_from(identity.uri())?))
}

/// A certificate and its private key, both PEM encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct CertKeyPair {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PEM, PKCS#8). Never logged.
    pub key_pem: String,
}

impl fmt::Debug for CertKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertKeyPair")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl CertKeyPair {
    /// Writes `<stem>.pem` and `<stem>.key` (mode 0600) into `dir`, creating it if needed.
    pub fn save(&self, dir: impl AsRef<Path>, stem: &str) -> Result<(), TlsError> {
        let dir = dir.as_ref();
        files::ensure_dir(dir)?;
        files::write_secret(&dir.join(format!("{stem}.key")), &self.key_pem)?;
        files::write_public(&dir.join(format!("{stem}.pem")), &self.cert_pem)
    }

    /// The identity the certificate names.
    pub fn identity(&self) -> Result<PeerIdentity, IdentityError> {
        let der = pem::certs(&self.cert_pem, "certificate")
            .map_err(|_| IdentityError::Malformed("no PEM CERTIFICATE block"))?
            .swap_remove(0);
        PeerIdentity::from_cert_der(&der)
    }

    /// Reads `<stem>.pem` and `<stem>.key` from `dir`, checking both decode.
    pub fn load(dir: impl AsRef<Path>, stem: &str) -> Result<Self, TlsError> {
        let dir = dir.as_ref();
        let cert_path = dir.join(format!("{stem}.pem"));
        let key_path = dir.join(format!("{stem}.key"));
        let cert_pem = files::read_text(&cert_path)?;
        let key_pem = files::read_text(&key_path)?;
        if pem::certs(&cert_pem, "certificate").is_err() {
            return Err(TlsError::ParseCertFile { path: cert_path });
        }
        KeyPair::from_pem(&key_pem).map_err(|source| TlsError::ParseKeyFile {
            path: key_path,
            source,
        })?;
        Ok(Self { cert_pem, key_pem })
    }
}

/// Subject name shared by the CA and issued certificates.
fn subject(cluster_id: &str, common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, ORGANIZATION);
    name.push(DnType::OrganizationalUnitName, cluster_id);
    name.push(DnType::CommonName, common_name);
    name
}

/// Host SANs of a node certificate, without duplicates.
fn node_alt_names(
    name: &str,
    dns_names: &[&str],
    ips: &[IpAddr],
) -> Result<Vec<SanType>, rcgen::Error> {
    let mut sans = vec![
        SanType::DnsName(Ia5String::try_from(NODE_SERVER_NAME)?),
        SanType::DnsName(Ia5String::try_from("localhost")?),
    ];
    let named = match name.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(Ia5String::try_from(name)?),
    };
    let mut extra = Vec::with_capacity(dns_names.len());
    for dns in dns_names {
        extra.push(SanType::DnsName(Ia5String::try_from(*dns)?));
    }
    for san in std::iter::once(named)
        .chain(extra)
        .chain(ips.iter().copied().map(SanType::IpAddress))
    {
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    Ok(sans)
}

/// Rebuilds a name attribute value with the same ASN.1 string type, so the
/// re-encoded issuer name is byte-identical to the CA's subject.
fn dn_value(tag: u8, bytes: &[u8]) -> Result<DnValue, &'static str> {
    let text = std::str::from_utf8(bytes).map_err(|_| "subject attribute is not text")?;
    match tag {
        TAG_UTF8_STRING => Ok(DnValue::Utf8String(text.to_owned())),
        TAG_PRINTABLE_STRING => PrintableString::try_from(text)
            .map(DnValue::PrintableString)
            .map_err(|_| "invalid PrintableString in subject"),
        TAG_IA5_STRING => Ia5String::try_from(text)
            .map(DnValue::Ia5String)
            .map_err(|_| "invalid IA5String in subject"),
        _ => Err("unsupported string type in subject"),
    }
}

/// Validity from January 1st of last year (tolerates clock skew between
/// nodes) to `years` after that.
fn set_validity(params: &mut CertificateParams, years: i32) {
    let start = current_year() - 1;
    params.not_before = rcgen::date_time_ymd(start, 1, 1);
    params.not_after = rcgen::date_time_ymd(start + years, 1, 1);
}

fn current_year() -> i32 {
    const SECONDS_PER_YEAR: u64 = 31_556_952; // 365.2425 days
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    1970 + i32::try_from(secs / SECONDS_PER_YEAR).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_carry_the_given_host_names() {
        let ca = ClusterCa::generate("c1").unwrap();
        let ip: IpAddr = "10.0.0.3".parse().unwrap();
        let pair = ca.issue_node(3, &["node3.example.com"], &[ip]).unwrap();
        let der = pem::certs(&pair.cert_pem, "certificate")
            .unwrap()
            .swap_remove(0);
        let contains = |needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
        assert!(contains(b"node3.example.com"));
        assert!(contains(b"node-3"));
        assert!(contains(&[10, 0, 0, 3]));
        assert!(ca.issue_node(3, &["bad\u{e9}name"], &[]).is_err());
    }

    #[test]
    fn certificates_name_their_identity_and_nothing_else() {
        let ca = ClusterCa::generate("c1").unwrap();
        let identity_of = |pair: &CertKeyPair| {
            let der = pem::certs(&pair.cert_pem, "certificate")
                .unwrap()
                .swap_remove(0);
            PeerIdentity::from_cert_der(&der)
        };
        let node = ca.issue_node(7, &[], &[]).unwrap();
        assert_eq!(identity_of(&node), Ok(PeerIdentity::Node(7)));
        let client = ca.issue_client("billing").unwrap();
        assert_eq!(
            identity_of(&client),
            Ok(PeerIdentity::Client("billing".into()))
        );
        // A client certificate carries no server name: it cannot serve as a node.
        let der = pem::certs(&client.cert_pem, "certificate")
            .unwrap()
            .swap_remove(0);
        assert!(
            !der.windows(NODE_SERVER_NAME.len())
                .any(|w| w == NODE_SERVER_NAME.as_bytes())
        );
        assert!(matches!(
            ca.issue_client("node/3"),
            Err(TlsError::InvalidPrincipal { .. })
        ));
    }
}
