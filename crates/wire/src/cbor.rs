//! Canonical CBOR helpers shared by every signed format (cartes, registry operations, log
//! entries, checkpoints, receipts).
//!
//! Every format here is "a CBOR array of known fields, encoded deterministically" (RFC 8949
//! §4.2.1). Decoders check canonicality by re-encoding the value they read and comparing bytes,
//! so each value has exactly one encoding. Errors are short static strings; each format wraps
//! them in its own error type with its own stable code.

use ciborium::Value;

/// A reason a byte string is not the expected canonical CBOR.
pub type Malformed = &'static str;

/// The canonical encoding of `value`.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    ciborium::ser::into_writer(value, &mut out).expect("writing CBOR to a Vec cannot fail");
    out
}

/// Decodes one CBOR item, which must fill `bytes` exactly and be canonically encoded.
pub fn decode_canonical(bytes: &[u8]) -> Result<Value, Malformed> {
    let value = decode_lax(bytes)?;
    if encode(&value) != bytes {
        return Err("not canonical CBOR");
    }
    Ok(value)
}

/// Decodes one CBOR item without the canonical check, for callers that re-encode a typed
/// value themselves (which checks canonicality and field rules in one comparison).
pub fn decode_lax(bytes: &[u8]) -> Result<Value, Malformed> {
    ciborium::de::from_reader(bytes).map_err(|_| "not valid CBOR")
}

/// `[payload, signature]`: the envelope every signed object travels in.
pub fn envelope(payload: &[u8], signature: &[u8; 64]) -> Vec<u8> {
    encode(&Value::Array(vec![
        Value::Bytes(payload.to_vec()),
        Value::Bytes(signature.to_vec()),
    ]))
}

/// Opens an envelope, checking it is canonical. Returns the payload and the signature bytes.
pub fn open_envelope(bytes: &[u8]) -> Result<(Vec<u8>, [u8; 64]), Malformed> {
    let value = decode_lax(bytes)?;
    let (payload, signature) = match value {
        Value::Array(items) if items.len() == 2 => {
            let mut items = items.into_iter();
            match (items.next(), items.next()) {
                (Some(Value::Bytes(p)), Some(Value::Bytes(s))) => (p, s),
                _ => return Err("envelope must hold two byte strings"),
            }
        }
        _ => return Err("envelope must be an array of two items"),
    };
    let signature: [u8; 64] = signature
        .as_slice()
        .try_into()
        .map_err(|_| "signature must be 64 bytes")?;
    if envelope(&payload, &signature) != bytes {
        return Err("envelope is not canonical CBOR");
    }
    Ok((payload, signature))
}

/// The items of an array with exactly `n` of them.
pub fn array(value: Value, n: usize, what: Malformed) -> Result<Vec<Value>, Malformed> {
    match value {
        Value::Array(items) if items.len() == n => Ok(items),
        _ => Err(what),
    }
}

pub fn uint(value: &Value, what: Malformed) -> Result<u64, Malformed> {
    match value {
        Value::Integer(i) => u64::try_from(*i).map_err(|_| what),
        _ => Err(what),
    }
}

pub fn text(value: &Value, what: Malformed) -> Result<String, Malformed> {
    match value {
        Value::Text(t) => Ok(t.clone()),
        _ => Err(what),
    }
}

pub fn bytes<const N: usize>(value: &Value, what: Malformed) -> Result<[u8; N], Malformed> {
    match value {
        Value::Bytes(b) => b.as_slice().try_into().map_err(|_| what),
        _ => Err(what),
    }
}

/// `null` or a value.
pub fn opt<T>(
    value: &Value,
    read: impl FnOnce(&Value) -> Result<T, Malformed>,
) -> Result<Option<T>, Malformed> {
    match value {
        Value::Null => Ok(None),
        v => read(v).map(Some),
    }
}

/// The signed message for a domain-separation `prefix` and a payload.
pub fn signed_message(prefix: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(prefix.len() + payload.len());
    message.extend_from_slice(prefix);
    message.extend_from_slice(payload);
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_shortest_integer_is_not_canonical() {
        assert_eq!(decode_canonical(&[0x18, 0x05]), Err("not canonical CBOR"));
        assert!(decode_canonical(&[0x05]).is_ok());
    }

    #[test]
    fn trailing_bytes_and_indefinite_lengths_are_refused() {
        assert!(decode_canonical(&[0x05, 0x00]).is_err());
        // An indefinite-length array holding 1: 0x9f 0x01 0xff.
        assert!(decode_canonical(&[0x9f, 0x01, 0xff]).is_err());
    }

    #[test]
    fn envelope_round_trips() {
        let env = envelope(b"abc", &[7; 64]);
        assert_eq!(open_envelope(&env).unwrap(), (b"abc".to_vec(), [7; 64]));
        let mut trailing = env.clone();
        trailing.push(0);
        assert!(open_envelope(&trailing).is_err());
    }
}
