//! Registry operations on arbitrary bytes: decode, then the rules, never a panic.
#![no_main]

use grant_node::registry::op::SignedOp;
use grant_node::registry::rules::{self, Params};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(op) = SignedOp::decode(data) {
        assert_eq!(op.op.encode(), op.payload);
        let _ = rules::apply(&op, 1_800_000_000, 0, None, None, Params::default());
    }
});
