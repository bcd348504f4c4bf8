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

/// Extracts the subject name and public key of an X.509 certificate.
pub(crate) fn issuer_parts(cert_der: &[u8]) -> Result<IssuerParts<'_>, &'static str> {
    let (cert, _) = expect(cert_der, TAG_SEQUENCE, "certificate is not a SEQUENCE")?;
    let (tbs, _) = expect(
        cert.content,
        TAG_SEQUENCE,
        "tbsCertificate is not a SEQUENCE",
    )?;
    let mut rest = tbs.content;
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
    }
}
