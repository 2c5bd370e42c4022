//! Log entries, checkpoint notes, witness requests and name-map proofs on arbitrary bytes:
//! never a panic; decoded entries and proofs re-encode to the same bytes.
#![no_main]

use ed25519_dalek::SigningKey;
use grant_node::registry::log::LogEntry;
use grant_node::registry::map::MapProof;
use grant_node::registry::note::SignedCheckpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = LogEntry::decode(data) {
        assert_eq!(entry.encode(), data);
    }
    let key = SigningKey::from_bytes(&[5; 32]).verifying_key();
    let _ = SignedCheckpoint::verify(data, &key);
    let _ = grant_node::registry::witness::parse(data, &key);
    if let Ok(proof) = MapProof::decode(data) {
        assert_eq!(proof.encode(), data);
        let _ = proof.verify(&[0; 32], &[7; 32]);
    }
});
