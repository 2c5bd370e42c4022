//! Receipts (base64url text) and notifications (raw CBOR) on arbitrary input: never a panic.
#![no_main]

use ed25519_dalek::SigningKey;
use grant_node::grant::statement::{Notification, Receipt};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = SigningKey::from_bytes(&[1; 32]).verifying_key();
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Receipt::decode(text);
        let _ = Receipt::verify(text, &key);
    }
    let _ = Notification::decode(data);
    let _ = Notification::verify(data, &key);
});
