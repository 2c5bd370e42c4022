//! The `registry-stub` binary itself: starts on port 0, prints its address and key, serves.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

#[test]
fn stub_binary_serves_metadata_and_keeps_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut keys = Vec::new();
    for _ in 0..2 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_registry-stub"))
            .args(["--listen", "127.0.0.1:0", "--pow-bits", "3", "--data-dir"])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let addr = first.rsplit("http://").next().unwrap().to_owned();
        let key_line = lines.next().unwrap().unwrap();
        let key = key_line.rsplit(' ').next().unwrap().to_owned();
        let (status, body) = get(&addr, "/registry/metadata");
        assert_eq!(status, 200);
        let meta: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(meta["public_key"], key);
        assert_eq!(meta["pow_bits"], 3);
        let (status, body) = get(&addr, "/nowhere");
        assert_eq!(status, 404);
        assert!(body.contains("\"error\":\"not-found\""));
        child.kill().unwrap();
        child.wait().unwrap();
        keys.push(key);
    }
    assert_eq!(keys[0], keys[1], "the key file is reused on restart");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("registry.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
