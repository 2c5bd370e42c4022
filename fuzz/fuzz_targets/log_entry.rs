//! Log entries and checkpoints on arbitrary bytes: never a panic; decoded entries re-encode
//! to the same bytes.
#![no_main]

use ed25519_dalek::SigningKey;
use grant_node::registry::log::{Checkpoint, LogEntry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = LogEntry::decode(data) {
        assert_eq!(entry.encode(), data);
    }
    let key = SigningKey::from_bytes(&[5; 32]).verifying_key();
    let _ = Checkpoint::verify(data, &key);
});
