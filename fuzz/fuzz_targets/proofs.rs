//! Consistency proofs and witness requests: arbitrary proof lines between arbitrary sizes,
//! checked by the light client's and the witness's verifiers, and whole `add-checkpoint`
//! bodies built around a correctly signed note. Never a panic.
#![no_main]

use ed25519_dalek::SigningKey;
use grant_node::registry::light::{check_consistency, Trusted};
use grant_node::registry::note::{origin_for, Checkpoint};
use grant_node::registry::witness;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 17 {
        return;
    }
    let old_size = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
    let new_size = u64::from_le_bytes(data[8..16].try_into().expect("8 bytes"));
    let text = String::from_utf8_lossy(&data[16..]);
    let proof: Vec<String> = text.lines().map(str::to_owned).collect();
    let _ = check_consistency(
        Trusted {
            size: old_size,
            root: [1; 32],
        },
        Trusted {
            size: new_size,
            root: [2; 32],
        },
        &proof,
    );
    // A witness request with this old size and these lines, around a signed note.
    let key = SigningKey::from_bytes(&[5; 32]);
    let cp = Checkpoint {
        origin: origin_for(&key.verifying_key()),
        size: new_size,
        root: [2; 32],
        map_root: [3; 32],
        time: 1,
    };
    let mut body = format!("old {old_size}\n").into_bytes();
    for line in &proof {
        body.extend_from_slice(line.as_bytes());
        body.push(b'\n');
    }
    body.push(b'\n');
    body.extend_from_slice(&cp.sign(&key));
    if let Ok(req) = witness::parse(&body, &key.verifying_key()) {
        let _ = witness::decide(&req, Some((old_size, [1; 32])));
        let _ = witness::decide(&req, None);
    }
});
