//! Just enough DER reading to reuse a stored CA certificate as an issuer.
//!
//! rcgen can only parse certificates with its `x509-parser` feature, which the
//! workspace does not enable. Issuing from a loaded CA needs two things from
//! `ca.pem`: the subject name (copied verbatim into every leaf's issuer field,
//! where verifiers compare it byte for byte) and the public key (to check that
//! `ca.key` belongs to it). Both sit at fixed positions of the certificate, so
//! a tiny TLV walker is enough.

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_OID: u8 = 0x06;
const TAG_VERSION: u8 = 0xa0;
pub(crate) const TAG_UTF8_STRING: u8 = 0x0c;
pub(crate) const TAG_PRINTABLE_STRING: u8 = 0x13;
pub(crate) const TAG_IA5_STRING: u8 = 0x16;

/// One attribute of a distinguished name, as found in the certificate.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NameAttribute<'a> {
    /// Decoded OID arcs (e.g. `[2, 5, 4, 3]` for commonName).
    pub oid: Vec<u64>,
    /// ASN.1 string tag of the value.
    pub tag: u8,
    /// Raw value bytes.
    pub value: &'a [u8],
}

/// The parts of a certificate needed to issue from it.
#[derive(Debug)]
pub(crate) struct IssuerParts<'a> {
    /// Subject name attributes, in certificate order.
    pub subject: Vec<NameAttribute<'a>>,
    /// Complete SubjectPublicKeyInfo TLV.
    pub spki: &'a [u8],
}

/// One tag-length-value element.
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    whole: &'a [u8],
}

/// Splits the first TLV off `input`.
fn next_tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), &'static str> {
    let truncated = "truncated DER element";
    let (&tag, rest) = input.split_first().ok_or(truncated)?;
    let (&first_len, mut rest) = rest.split_first().ok_or(truncated)?;
    let len = if first_len < 0x80 {
        usize::from(first_len)
    } else {
        let count = usize::from(first_len & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return Err("unsupported DER length encoding");
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        rest = &rest[count..];
        len
    };
    if rest.len() < len {
        return Err(truncated);
    }
    let header = input.len() - rest.len();
    let tlv = Tlv {
        tag,
        content: &rest[..len],
        whole: &input[..header + len],
    };
    Ok((tlv, &rest[len..]))
}

/// Reads the next TLV and insists on its tag.
fn expect<'a>(
    input: &'a [u8],
    tag: u8,
    what: &'static str,
) -> Result<(Tlv<'a>, &'a [u8]), &'static str> {
    let (tlv, rest) = next_tlv(input)?;
    if tlv.tag != tag {
        return Err(what);
    }
    Ok((tlv, rest))
}

/// Decodes the base-128 arcs of an OID.
fn decode_oid(bytes: &[u8]) -> Result<Vec<u64>, &'static str> {
    let mut arcs = Vec::new();
    let mut value: u64 = 0;
    for (i, &b) in bytes.iter().enumerate() {
        value = value
            .checked_mul(128)
            .ok_or("OID arc too large")?
            .checked_add(u64::from(b & 0x7f))
            .ok_or("OID arc too large")?;
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        } else if i + 1 == bytes.len() {
            return Err("truncated OID");
        }
    }
    if arcs.is_empty() {
        return Err("empty OID");
    }
    Ok(arcs)
}

/// Parses a Name (SEQUENCE OF SET OF AttributeTypeAndValue).
fn parse_name(content: &[u8]) -> Result<Vec<NameAttribute<'_>>, &'static str> {
    let mut attrs = Vec::new();
    let mut rest = content;
    while !rest.is_empty() {
        let (set, after) = expect(rest, TAG_SET, "name entry is not a SET")?;
        rest = after;
        let mut inner = set.content;
        while !inner.is_empty() {
            let (atv, after) = expect(inner, TAG_SEQUENCE, "name attribute is not a SEQUENCE")?;
            inner = after;
            let (oid, value_rest) = expect(atv.content, TAG_OID, "name attribute lacks an OID")?;
            let (value, _) = next_tlv(value_rest)?;
            attrs.push(NameAttribute {
                oid: decode_oid(oid.content)?,
                tag: value.tag,
                value: value.content,
            });
        }
    }
    Ok(attrs)
}

/// The fields of a certificate's tbsCertificate (what its signature covers).
fn tbs_fields(cert_der: &[u8]) -> Result<&[u8], &'static str> {
    let (cert, _) = expect(cert_der, TAG_SEQUENCE, "certificate is not a SEQUENCE")?;
    let (tbs, _) = expect(
        cert.content,
        TAG_SEQUENCE,
        "tbsCertificate is not a SEQUENCE",
    )?;
    Ok(tbs.content)
}

/// Extracts the subject name and public key of an X.509 certificate.
pub(crate) fn issuer_parts(cert_der: &[u8]) -> Result<IssuerParts<'_>, &'static str> {
    let mut rest = tbs_fields(cert_der)?;
    let (first, after) = next_tlv(rest)?;
    if first.tag == TAG_VERSION {
        rest = after;
    }
    let (_serial, rest) = next_tlv(rest)?;
    let (_signature_alg, rest) = expect(rest, TAG_SEQUENCE, "signature algorithm missing")?;
    let (_issuer, rest) = expect(rest, TAG_SEQUENCE, "issuer name missing")?;
    let (_validity, rest) = expect(rest, TAG_SEQUENCE, "validity missing")?;
    let (subject, rest) = expect(rest, TAG_SEQUENCE, "subject name missing")?;
    let (spki, _) = expect(rest, TAG_SEQUENCE, "subject public key missing")?;
    Ok(IssuerParts {
        subject: parse_name(subject.content)?,
        spki: spki.whole,
    })
}

/// Context tag of the extensions field of a v3 tbsCertificate.
const TAG_EXTENSIONS: u8 = 0xa3;
/// Universal tags met inside an extension.
const TAG_BOOLEAN: u8 = 0x01;
const TAG_OCTET_STRING: u8 = 0x04;
/// GeneralName choice `uniformResourceIdentifier` (context tag 6, primitive).
const TAG_GENERAL_NAME_URI: u8 = 0x86;
/// OID of the subjectAltName extension (2.5.29.17).
const OID_SUBJECT_ALT_NAME: [u64; 4] = [2, 5, 29, 17];

/// The URIs among a certificate's subjectAltNames, in order; empty when it
/// has none (or no SAN extension).
pub(crate) fn san_uris(cert_der: &[u8]) -> Result<Vec<&str>, &'static str> {
    let mut rest = tbs_fields(cert_der)?;
    // version, serial, signature, issuer, validity, subject, spki; then the
    // optional unique ids and extensions, each under its own context tag.
    let mut extensions = None;
    while !rest.is_empty() {
        let (field, after) = next_tlv(rest)?;
        rest = after;
        if field.tag == TAG_EXTENSIONS {
            extensions = Some(field.content);
        }
    }
    let Some(extensions) = extensions else {
        return Ok(Vec::new());
    };
    let (list, _) = expect(extensions, TAG_SEQUENCE, "extensions are not a SEQUENCE")?;
    let mut uris = Vec::new();
    let mut rest = list.content;
    while !rest.is_empty() {
        let (extension, after) = expect(rest, TAG_SEQUENCE, "extension is not a SEQUENCE")?;
        rest = after;
        let (oid, fields) = expect(extension.content, TAG_OID, "extension lacks an OID")?;
        if decode_oid(oid.content)? != OID_SUBJECT_ALT_NAME {
            continue;
        }
        let (mut value, after) = next_tlv(fields)?;
        if value.tag == TAG_BOOLEAN {
            value = next_tlv(after)?.0;
        }
        if value.tag != TAG_OCTET_STRING {
            return Err("subjectAltName value is not an OCTET STRING");
        }
        let (names, _) = expect(
            value.content,
            TAG_SEQUENCE,
            "subjectAltName is not a SEQUENCE",
        )?;
        let mut inner = names.content;
        while !inner.is_empty() {
            let (name, after) = next_tlv(inner)?;
            inner = after;
            if name.tag == TAG_GENERAL_NAME_URI {
                uris.push(std::str::from_utf8(name.content).map_err(|_| "URI is not text")?);
            }
        }
    }
    Ok(uris)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_common_name_oid() {
        assert_eq!(decode_oid(&[0x55, 0x04, 0x03]).unwrap(), vec![2, 5, 4, 3]);
        assert_eq!(
            decode_oid(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]).unwrap(),
            vec![1, 2, 840, 113549]
        );
        assert!(decode_oid(&[0x86]).is_err());
    }

    #[test]
    fn rejects_garbage() {
        assert!(issuer_parts(&[]).is_err());
        assert!(issuer_parts(&[0x30, 0x05, 0x01]).is_err());
        assert!(issuer_parts(&[0x04, 0x00]).is_err());
        assert!(san_uris(&[]).is_err());
        assert!(san_uris(&[0x30, 0x02, 0x30, 0x05]).is_err());
    }

    #[test]
    fn every_prefix_and_every_flipped_byte_of_a_certificate_fails_cleanly() {
        let ca = crate::tls::ClusterCa::generate("der-test").unwrap();
        let pair = ca.issue_client("alice").unwrap();
        let der = crate::tls::pem::certs(&pair.cert_pem, "certificate")
            .unwrap()
            .swap_remove(0);
        assert_eq!(san_uris(&der).unwrap(), vec!["sluice://client/alice"]);
        for len in 0..der.len() {
            let _ = san_uris(&der[..len]);
            let _ = issuer_parts(&der[..len]);
        }
        let node = ca.issue_node(4, &["n4.example.com"], &[]).unwrap();
        let node_der = crate::tls::pem::certs(&node.cert_pem, "certificate")
            .unwrap()
            .swap_remove(0);
        sluice_fuzzing::run(
            "transport::certificate",
            &[der.to_vec(), node_der.to_vec()],
            |bytes| {
                let _ = san_uris(bytes);
                let _ = issuer_parts(bytes);
                let _ = crate::tls::PeerIdentity::from_cert_der(bytes);
            },
        );
        let mut bytes = der.to_vec();
        for i in 0..bytes.len() {
            for flip in [0x01, 0x80, 0xff] {
                bytes[i] ^= flip;
                let _ = san_uris(&bytes);
                let _ = issuer_parts(&bytes);
                bytes[i] ^= flip;
            }
        }
    }
}
