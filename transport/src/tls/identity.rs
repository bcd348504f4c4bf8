//! Who a certificate speaks for: a node of the cluster or a client principal.
//!
//! Every certificate the cluster CA issues names exactly one identity, as a
//! URI in its subjectAltName: `sluice://node/<id>` or `sluice://client/<name>`.
//! The CA's signature binds it to the key, so once the TLS handshake has
//! verified the chain, the URI is who the peer is. Node certificates also
//! carry the server usage and the [`NODE_SERVER_NAME`](super::NODE_SERVER_NAME)
//! SAN; client certificates carry neither, so a client certificate can never
//! serve as a node's listener, and nodes refuse node-only requests from it.

use std::fmt;

use super::der;

/// Scheme and authority shared by every identity URI.
const URI_PREFIX: &str = "sluice://";
/// Longest client principal name accepted: it travels in every denial
/// message and audit line, where a short token is enough.
pub const PRINCIPAL_NAME_BYTES_MAX: usize = 64;
/// Names no certificate may carry: `anonymous` is what nodes call peers
/// without a certificate, so a certificate of that name would blur the two.
const RESERVED_PRINCIPAL_NAMES: [&str; 1] = ["anonymous"];

/// The identity an issued certificate names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerIdentity {
    /// Node `id` of the cluster.
    Node(u64),
    /// A client principal (what ACLs name), e.g. `admin` or `billing-app`.
    Client(String),
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerIdentity::Node(id) => write!(f, "node {id}"),
            PeerIdentity::Client(name) => f.write_str(name),
        }
    }
}

/// Why a certificate's identity could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The certificate is not well-formed DER.
    #[error("the certificate cannot be read: {0}")]
    Malformed(&'static str),
    /// No `sluice://` URI: a certificate issued by a release before identities.
    #[error(
        "the certificate names no Sluice identity (it was issued before certificates named \
         nodes and principals); issue a new one with `sluice cluster ca issue`"
    )]
    Missing,
    /// More than one identity, or one that does not parse.
    #[error("the certificate's identity {0:?} is not valid")]
    Invalid(String),
}

impl PeerIdentity {
    /// The subjectAltName URI that names this identity.
    pub fn uri(&self) -> String {
        match self {
            PeerIdentity::Node(id) => format!("{URI_PREFIX}node/{id}"),
            PeerIdentity::Client(name) => format!("{URI_PREFIX}client/{name}"),
        }
    }

    /// Parses an identity URI; `None` if it is not a Sluice identity at all.
    pub fn from_uri(uri: &str) -> Option<Result<Self, IdentityError>> {
        let rest = uri.strip_prefix(URI_PREFIX)?;
        let invalid = || IdentityError::Invalid(uri.to_owned());
        Some(match rest.split_once('/') {
            Some(("node", id)) => id
                .parse::<u64>()
                .ok()
                .filter(|_| !id.starts_with('+'))
                .map(PeerIdentity::Node)
                .ok_or_else(invalid),
            Some(("client", name)) => check_principal_name(name)
                .map(|()| PeerIdentity::Client(name.to_owned()))
                .map_err(|_| invalid()),
            _ => Err(invalid()),
        })
    }

    /// The identity named by a DER certificate (one the handshake verified).
    pub fn from_cert_der(cert_der: &[u8]) -> Result<Self, IdentityError> {
        let uris = der::san_uris(cert_der).map_err(IdentityError::Malformed)?;
        let mut found = None;
        for uri in uris {
            let Some(identity) = PeerIdentity::from_uri(uri) else {
                continue;
            };
            if found.is_some() {
                return Err(IdentityError::Invalid(
                    "more than one sluice:// identity".into(),
                ));
            }
            found = Some(identity?);
        }
        found.ok_or(IdentityError::Missing)
    }
}

/// Checks a client principal name: 1 to [`PRINCIPAL_NAME_BYTES_MAX`]
/// ASCII letters, digits, `-`, `_` and `.`, starting with a letter or digit.
/// The same rule everywhere a principal is named (certificates, ACLs), so a
/// name that can be granted can be issued and the other way round.
pub fn check_principal_name(name: &str) -> Result<(), String> {
    let well_formed = !name.is_empty()
        && name.len() <= PRINCIPAL_NAME_BYTES_MAX
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if RESERVED_PRINCIPAL_NAMES.contains(&name) {
        Err(format!(
            "principal {name:?} is reserved for peers without a certificate; pick another name"
        ))
    } else if well_formed {
        Ok(())
    } else {
        Err(format!(
            "principal {name:?} is not a usable name: use 1 to {PRINCIPAL_NAME_BYTES_MAX} letters, \
             digits, '-', '_' or '.', starting with a letter or digit (e.g. billing-app)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_through_their_uri() {
        for identity in [
            PeerIdentity::Node(0),
            PeerIdentity::Node(u64::MAX),
            PeerIdentity::Client("admin".into()),
            PeerIdentity::Client("a.b-c_d".into()),
        ] {
            let uri = identity.uri();
            assert_eq!(PeerIdentity::from_uri(&uri), Some(Ok(identity)));
        }
    }

    #[test]
    fn foreign_and_malformed_uris_are_told_apart() {
        assert_eq!(PeerIdentity::from_uri("https://example.com"), None);
        for bad in [
            "sluice://node/",
            "sluice://node/+3",
            "sluice://node/x",
            "sluice://node/99999999999999999999999",
            "sluice://client/",
            "sluice://client/-lead",
            "sluice://client/a/b",
            "sluice://root/1",
        ] {
            assert!(
                matches!(
                    PeerIdentity::from_uri(bad),
                    Some(Err(IdentityError::Invalid(_)))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn principal_names_are_short_tokens() {
        assert!(check_principal_name("billing-app").is_ok());
        assert!(check_principal_name(&"a".repeat(PRINCIPAL_NAME_BYTES_MAX)).is_ok());
        assert!(check_principal_name(&"a".repeat(PRINCIPAL_NAME_BYTES_MAX + 1)).is_err());
        for bad in ["", ".hidden", "with space", "tab\t", "ünï", "a*"] {
            assert!(check_principal_name(bad).is_err(), "{bad:?}");
        }
    }
}
