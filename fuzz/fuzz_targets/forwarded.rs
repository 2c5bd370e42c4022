//! `X-Forwarded-For` and `Forwarded` from a trusted proxy, on arbitrary header values: never
//! a panic; the answer is the peer, an address a header named, or a 400.
#![no_main]

use grant_node::http::node::client_address;
use grant_node::outbound::Cidr;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let trusted = [Cidr::parse("127.0.0.0/8").expect("a CIDR")];
    let peer: std::net::SocketAddr = "127.0.0.1:9".parse().expect("an address");
    let mut headers = hyper::HeaderMap::new();
    for (i, chunk) in data.split(|b| *b == 0).enumerate().take(8) {
        let Ok(value) = hyper::header::HeaderValue::from_bytes(chunk) else {
            continue;
        };
        let name = if i % 2 == 0 {
            "x-forwarded-for"
        } else {
            "forwarded"
        };
        headers.append(name, value);
    }
    match client_address(&trusted, peer, &headers) {
        Ok(addr) => assert!(addr == peer || addr.port() == 0),
        Err(e) => assert_eq!(e.status, 400),
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = grant_node::http::node::parse_forwarded_ip(text);
    }
});
