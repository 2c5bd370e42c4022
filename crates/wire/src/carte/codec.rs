//! The carte wire format, version 1: canonical CBOR inside base64url.
//!
//! Decoding is strict. A decoded value is re-encoded and the bytes must match exactly, so each
//! carte value has exactly one wire form: no trailing bytes, no indefinite lengths, shortest
//! integers, the exact field count, canonical names. A second wire form for one value would let
//! an attacker slip a replayed carte past a cache or replay table keyed by the wire bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ciborium::Value;
use ed25519_dalek::{Signature, Signer, SigningKey};

use super::{Carte, CarteError, GrantRequest, KIND, SIGNATURE_PREFIX, VERSION};
use crate::cbor;
use crate::name::Name;
use crate::scope::Scope;

/// The longest carte accepted, in bytes of its wire (base64url) form.
pub const MAX_WIRE_LEN: usize = 4096;

/// The number of fields in a version 1 payload.
const FIELDS: usize = 12;

/// A carte whose format has been checked but whose signature and validity have not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedCarte {
    pub carte: Carte,
    /// The payload bytes the signature covers (without the prefix).
    pub payload: Vec<u8>,
    pub signature: Signature,
}

/// The canonical CBOR payload of a carte (what is signed, after the prefix).
pub fn encode_payload(carte: &Carte) -> Vec<u8> {
    to_cbor(&payload_value(carte))
}

/// Signs `carte` and returns its wire form.
pub fn sign(carte: &Carte, key: &SigningKey) -> String {
    let payload = encode_payload(carte);
    let signature = key.sign(&signed_message(&payload));
    wire(&payload, &signature)
}

/// The wire form of a payload and its signature.
pub fn wire(payload: &[u8], signature: &Signature) -> String {
    URL_SAFE_NO_PAD.encode(cbor::envelope(payload, &signature.to_bytes()))
}

/// The exact bytes a carte signature covers.
pub fn signed_message(payload: &[u8]) -> Vec<u8> {
    cbor::signed_message(SIGNATURE_PREFIX, payload)
}

/// Decodes a carte's wire form, refusing anything but the one canonical encoding.
pub fn decode(wire_form: &str) -> Result<DecodedCarte, CarteError> {
    use CarteError::Malformed;
    if wire_form.len() > MAX_WIRE_LEN {
        return Err(Malformed("longer than 4096 bytes"));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(wire_form)
        .map_err(|_| Malformed("not unpadded base64url"))?;
    let (payload, signature) = cbor::open_envelope(&bytes).map_err(Malformed)?;
    let signature = Signature::from_bytes(&signature);
    let carte = parse_payload(cbor::decode_lax(&payload).map_err(Malformed)?)?;
    if encode_payload(&carte) != payload {
        return Err(Malformed("payload is not canonical CBOR"));
    }
    Ok(DecodedCarte {
        carte,
        payload,
        signature,
    })
}

fn payload_value(carte: &Carte) -> Value {
    let name = |n: &Option<Name>| match n {
        Some(n) => Value::Text(n.as_str().to_owned()),
        None => Value::Null,
    };
    let addresses = match &carte.addresses {
        None => Value::Null,
        Some(list) => Value::Array(
            list.iter()
                .map(|a| match a {
                    IpAddr::V4(v4) => Value::Bytes(v4.octets().to_vec()),
                    IpAddr::V6(v6) => Value::Bytes(v6.octets().to_vec()),
                })
                .collect(),
        ),
    };
    let request = match &carte.request {
        None => Value::Null,
        Some(r) => Value::Array(vec![
            r.scope.bits().into(),
            Value::Text(r.redirect_uri.clone()),
            Value::Text(r.state.clone()),
        ]),
    };
    Value::Array(vec![
        VERSION.into(),
        Value::Text(KIND.to_owned()),
        Value::Text(carte.owner.as_str().to_owned()),
        name(&carte.audience),
        name(&carte.subject),
        carte.beginning.into(),
        carte.deadline.into(),
        carte.client_scope.bits().into(),
        carte.admin_scope.bits().into(),
        addresses,
        request,
        Value::Bytes(carte.nonce.to_vec()),
    ])
}

fn parse_payload(value: Value) -> Result<Carte, CarteError> {
    use CarteError::Malformed;
    let Value::Array(fields) = value else {
        return Err(Malformed("payload must be an array"));
    };
    // The version comes first so that a future version with another field count is reported
    // as unsupported rather than malformed.
    let version = fields
        .first()
        .ok_or(Malformed("payload is empty"))
        .and_then(|v| uint(v, "version must be an unsigned integer"))?;
    if version != VERSION {
        return Err(CarteError::UnsupportedVersion(version));
    }
    if fields.len() != FIELDS {
        return Err(Malformed("payload must have exactly 12 fields"));
    }
    let f = &fields;
    if f[1] != Value::Text(KIND.to_owned()) {
        return Err(Malformed("kind must be \"carte\""));
    }
    let owner = name(&f[2])?.ok_or(Malformed("owner is required"))?;
    let audience = name(&f[3])?;
    let subject = name(&f[4])?;
    let beginning = uint(&f[5], "beginning must be an unsigned integer")?;
    let deadline = uint(&f[6], "deadline must be an unsigned integer")?;
    if deadline < beginning {
        return Err(Malformed("deadline is before beginning"));
    }
    let client_scope = Scope::from_bits(uint(&f[7], "client_scope must be an unsigned integer")?);
    let admin_scope = Scope::from_bits(uint(&f[8], "admin_scope must be an unsigned integer")?);
    let addresses = match &f[9] {
        Value::Null => None,
        Value::Array(items) => Some(items.iter().map(address).collect::<Result<Vec<_>, _>>()?),
        _ => return Err(Malformed("addresses must be null or an array")),
    };
    let request = match &f[10] {
        Value::Null => None,
        Value::Array(items) if items.len() == 3 => Some(GrantRequest {
            scope: Scope::from_bits(uint(
                &items[0],
                "request scope must be an unsigned integer",
            )?),
            redirect_uri: text(&items[1], "request redirect_uri must be text")?,
            state: text(&items[2], "request state must be text")?,
        }),
        _ => return Err(Malformed("request must be null or an array of three items")),
    };
    let nonce = match &f[11] {
        Value::Bytes(b) => {
            <[u8; 16]>::try_from(b.as_slice()).map_err(|_| Malformed("nonce must be 16 bytes"))?
        }
        _ => return Err(Malformed("nonce must be a byte string")),
    };
    Ok(Carte {
        owner,
        audience,
        subject,
        beginning,
        deadline,
        client_scope,
        admin_scope,
        addresses,
        request,
        nonce,
    })
}

fn uint(value: &Value, what: &'static str) -> Result<u64, CarteError> {
    cbor::uint(value, what).map_err(CarteError::Malformed)
}

fn text(value: &Value, what: &'static str) -> Result<String, CarteError> {
    cbor::text(value, what).map_err(CarteError::Malformed)
}

fn name(value: &Value) -> Result<Option<Name>, CarteError> {
    match value {
        Value::Null => Ok(None),
        Value::Text(t) => Name::parse_canonical(t)
            .map(Some)
            .map_err(|_| CarteError::Malformed("a name field is not a canonical name")),
        _ => Err(CarteError::Malformed("a name field must be text or null")),
    }
}

fn address(value: &Value) -> Result<IpAddr, CarteError> {
    match value {
        Value::Bytes(b) if b.len() == 4 => {
            let o: [u8; 4] = b.as_slice().try_into().expect("length checked");
            Ok(IpAddr::V4(Ipv4Addr::from(o)))
        }
        Value::Bytes(b) if b.len() == 16 => {
            let o: [u8; 16] = b.as_slice().try_into().expect("length checked");
            Ok(IpAddr::V6(Ipv6Addr::from(o)))
        }
        _ => Err(CarteError::Malformed("an address must be 4 or 16 bytes")),
    }
}

fn to_cbor(value: &Value) -> Vec<u8> {
    cbor::encode(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Carte {
        let mut c = Carte::new(Name::parse("app").unwrap(), 1000, 1600, [7; 16]);
        c.audience = Some(Name::parse("alice").unwrap());
        c.admin_scope = Scope::from_bits(0x80000);
        c
    }

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[1; 32])
    }

    fn raw(wire_form: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(wire_form).unwrap()
    }

    #[test]
    fn round_trip() {
        let wire_form = sample().sign(&key());
        assert_eq!(decode(&wire_form).unwrap().carte, sample());
    }

    #[test]
    fn trailing_byte_is_refused() {
        let mut bytes = raw(&sample().sign(&key()));
        bytes.push(0);
        let err = decode(&URL_SAFE_NO_PAD.encode(&bytes)).unwrap_err();
        assert_eq!(err.code(), "carte.malformed");
    }

    #[test]
    fn non_shortest_integer_is_refused() {
        // Re-encode the payload with `beginning` (1000) as a 4-byte integer instead of 2.
        let wire_form = sample().sign(&key());
        let decoded = decode(&wire_form).unwrap();
        let shortest = [0x19, 0x03, 0xe8];
        let longer = [0x1a, 0x00, 0x00, 0x03, 0xe8];
        let at = decoded
            .payload
            .windows(3)
            .position(|w| w == shortest)
            .unwrap();
        let mut payload = decoded.payload[..at].to_vec();
        payload.extend_from_slice(&longer);
        payload.extend_from_slice(&decoded.payload[at + 3..]);
        // Sign the variant properly, so only the encoding is wrong.
        let signature = key().sign(&signed_message(&payload));
        let err = decode(&wire(&payload, &signature)).unwrap_err();
        assert_eq!(err, CarteError::Malformed("payload is not canonical CBOR"));
    }

    #[test]
    fn padded_or_standard_base64_is_refused() {
        let wire_form = sample().sign(&key());
        let padded = format!("{wire_form}=");
        assert_eq!(
            decode(&padded).unwrap_err(),
            CarteError::Malformed("not unpadded base64url")
        );
        let standard = base64::engine::general_purpose::STANDARD_NO_PAD.encode(raw(&wire_form));
        if standard != wire_form {
            assert_eq!(decode(&standard).unwrap_err().code(), "carte.malformed");
        }
    }

    #[test]
    fn oversized_carte_is_refused_before_decoding() {
        let err = decode(&"A".repeat(MAX_WIRE_LEN + 1)).unwrap_err();
        assert_eq!(err, CarteError::Malformed("longer than 4096 bytes"));
    }

    #[test]
    fn non_canonical_name_is_refused() {
        let mut payload = encode_payload(&sample());
        let at = payload.windows(3).position(|w| w == b"app").unwrap();
        payload[at] = b'A';
        let signature = key().sign(&signed_message(&payload));
        let err = decode(&wire(&payload, &signature)).unwrap_err();
        assert_eq!(err.code(), "carte.malformed");
    }

    #[test]
    fn other_version_is_unsupported() {
        let mut value = payload_value(&sample());
        if let Value::Array(items) = &mut value {
            items[0] = 2u64.into();
        }
        let payload = to_cbor(&value);
        let signature = key().sign(&signed_message(&payload));
        let err = decode(&wire(&payload, &signature)).unwrap_err();
        assert_eq!(err, CarteError::UnsupportedVersion(2));
        assert_eq!(err.code(), "carte.unsupported-version");
    }
}
