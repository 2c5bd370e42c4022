//! The `/grant` query string on arbitrary input: never a panic; what parses survives a
//! re-encoding unchanged (when it still fits); redirect URIs never panic the URI rules.
//! Its first crash (a re-encoded query over the limit) is pinned by the unit test
//! `reencoding_can_grow_so_redirects_forward_the_raw_query`.
#![no_main]

use grant_node::grant::request::GrantParams;
use grant_node::uri::CheckedUri;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(params) = GrantParams::parse(text) {
        // Re-encoding may lengthen a query past the limit (the node forwards raw queries for
        // that reason); within the limit it must round-trip exactly.
        let requery = params.to_query(None);
        if requery.len() <= grant_node::grant::request::MAX_QUERY_BYTES {
            let again = GrantParams::parse(&requery).expect("a re-encoded query parses");
            assert_eq!(again, params);
        }
        let _ = CheckedUri::parse_redirect(&params.redirect_uri);
    }
    let _ = CheckedUri::parse_node(text);
});
