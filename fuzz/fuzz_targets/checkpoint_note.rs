//! Checkpoint notes and cosignatures on arbitrary bytes: the note body parser, a signed note
//! with arbitrary cosignature lines added, and witness verifier keys. Never a panic; a
//! cosignature line that is accepted verifies under its witness.
#![no_main]

use ed25519_dalek::SigningKey;
use grant_node::registry::note::{origin_for, Checkpoint, SignedCheckpoint, Witness};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = SigningKey::from_bytes(&[5; 32]);
    let origin = origin_for(&key.verifying_key());
    let _ = Checkpoint::parse_text(data, &origin);
    let cp = Checkpoint {
        origin,
        size: 3,
        root: [1; 32],
        map_root: [2; 32],
        time: 1,
    };
    let note = cp.sign(&key);
    let signed = SignedCheckpoint::verify(&note, &key.verifying_key()).expect("our own note");
    if let Ok(with) = signed.with_cosignatures(data) {
        let witness = Witness::new(
            "w.example",
            SigningKey::from_bytes(&[6; 32]).verifying_key(),
        );
        let _ = with.cosigned_by(std::slice::from_ref(&witness));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Witness::parse_vkey(text);
    }
});
