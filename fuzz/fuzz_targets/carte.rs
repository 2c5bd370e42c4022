//! The carte decoder and verifier on arbitrary input: never a panic, and whatever decodes
//! re-encodes to the same bytes.
#![no_main]

use ed25519_dalek::SigningKey;
use grant_node::carte::{self, Expectations, KeyEntry, KeyTable};
use grant_node::name::Name;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(decoded) = carte::decode(text) {
        assert_eq!(
            carte::codec::encode_payload(&decoded.carte),
            decoded.payload
        );
    }
    let key = SigningKey::from_bytes(&[7; 32]);
    let mut table = KeyTable::new();
    if let Ok(name) = Name::parse("app") {
        table.add(
            name,
            KeyEntry {
                key: key.verifying_key(),
                valid_from: 0,
                compromised: None,
            },
        );
    }
    let accepts = |n: &Name| n.as_str() == "alice";
    let expect = Expectations {
        accepts_audience: &accepts,
        peer: None,
        skew: 60,
        max_lifetime: 3600,
    };
    let _ = carte::verify(text, 1_800_000_000, &expect, &table);
});
