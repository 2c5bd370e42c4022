//! The `/grant` query string on arbitrary input: never a panic; what parses survives a
//! re-encoding unchanged; redirect URIs never panic the URI rules.
#![no_main]

use grant_node::grant::request::GrantParams;
use grant_node::uri::CheckedUri;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(params) = GrantParams::parse(text) {
        let again = GrantParams::parse(&params.to_query(None)).expect("a re-encoded query parses");
        assert_eq!(again, params);
        let _ = CheckedUri::parse_redirect(&params.redirect_uri);
    }
    let _ = CheckedUri::parse_node(text);
});
