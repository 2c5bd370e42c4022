//! `data/openapi.json` against a real validator (`openapi-spec-validator`), and the live node
//! against the document: every documented operation is driven over HTTP, and every answer
//! (status, content type, body) must be described by the document and match its schema.
//! `scripts/openapi_check.py` does the checking; `scripts/test.sh` installs its Python packages
//! in a virtual environment and points `GRANT_NODE_OPENAPI_PYTHON` at it.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{now, tempdir, Identity, Node};
use grant_node::name::Name;
use grant_node::outbound::HttpClient;
use grant_node::scope::Scope;
use hyper::body::Bytes;
use hyper::Method;
use serde_json::{json, Value};

const VIEW_PROFILE: u64 = 0x80000;
const PLATFORM: &str = "https://platform.example";

/// The Python that has the validators, or `None` (with a note) when this machine has none.
fn python() -> Option<String> {
    let python =
        std::env::var("GRANT_NODE_OPENAPI_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let ok = Command::new(&python)
        .args([
            "-c",
            "import openapi_spec_validator, openapi_schema_validator",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(python);
    }
    assert!(
        std::env::var_os("GRANT_NODE_REQUIRE_OPENAPI").is_none(),
        "the OpenAPI validators are required but {python} has none"
    );
    eprintln!("skipped: no openapi-spec-validator (scripts/test.sh installs it)");
    None
}

fn check(python: &str, samples: Option<&std::path::Path>) -> String {
    let mut cmd = Command::new(python);
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/openapi_check.py"
    ))
    .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/data/openapi.json"));
    if let Some(s) = samples {
        cmd.arg(s);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

#[test]
fn the_document_is_valid_openapi_3_1() {
    let Some(python) = python() else { return };
    let doc: Value = serde_json::from_str(include_str!("../data/openapi.json")).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    println!("{}", check(&python, None));
}

/// Records every answer for the checker.
struct Recorder {
    base: String,
    http: HttpClient,
    samples: Vec<Value>,
}

impl Recorder {
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> (u16, Value) {
        let r = self
            .http
            .send(
                method.clone(),
                &format!("{}{path}", self.base),
                headers,
                body,
            )
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&r.body).into_owned();
        self.samples.push(json!({
            "method": method.as_str(),
            "path": path,
            "status": r.status.as_u16(),
            "content_type": r.headers.get("content-type").map(|v| v.to_str().unwrap()),
            "body": text,
        }));
        (
            r.status.as_u16(),
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }

    async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        self.send(Method::GET, path, headers, Bytes::new()).await
    }

    async fn json(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Value,
    ) -> (u16, Value) {
        let mut h = headers.to_vec();
        h.push(("content-type", "application/json"));
        self.send(method, path, &h, body.to_string().into()).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_answer_of_the_live_node_is_described_by_the_document() {
    let Some(python) = python() else { return };
    let dir = tempdir();
    let mut config = Node::embedded_config(dir.path(), "alice");
    config.controllers = vec![(
        Name::parse("platform").unwrap(),
        Scope::from_bits(VIEW_PROFILE),
    )];
    config.cors_origins = vec![PLATFORM.to_owned()];
    let node = Node::start(config).await;
    let browser = node.set_password("alice", "correct horse battery").await;
    let app = Identity::new("app", 1);
    let platform = Identity::new("platform", 7);
    node.register_app(&app, &["http://127.0.0.1:4000/cb"]).await;
    node.register_app(&platform, &[]).await;
    let cookie = browser
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let origin = node.url();
    let session = [("cookie", cookie.as_str()), ("origin", origin.as_str())];
    let app_carte = format!(
        "Carte {}",
        app.carte("alice", VIEW_PROFILE, 0).sign(&app.signing)
    );
    let as_app = [("authorization", app_carte.as_str())];
    let all = 0x80000 | 0x100000 | 0x400000 | 0x800000 | 0x8000000;
    let owner_carte = format!(
        "Carte {}",
        Identity::new("alice", 0).carte("alice", all, 0).sign(&{
            // alice's own key lives in the node's data directory.
            grant_node::keyfile::load(&dir.path().join("owners").join("alice").join("signing.key"))
                .unwrap()
        })
    );
    let as_owner = [("authorization", owner_carte.as_str())];
    let mut r = Recorder {
        base: node.url(),
        http: HttpClient::new(),
        samples: Vec::new(),
    };

    // Public documents.
    assert_eq!(r.get("/healthz", &[]).await.0, 200);
    assert_eq!(r.get("/metrics", &[]).await.0, 200);
    assert_eq!(r.get("/openapi.json", &[]).await.0, 200);
    assert_eq!(r.get("/.well-known/grant-node", &[]).await.0, 200);

    // The grant API, by session and by the owner's carte.
    assert_eq!(r.get("/api/grants", &[]).await.0, 401);
    let put = |add: Value| json!({ "add": add });
    assert_eq!(
        r.json(
            Method::PUT,
            "/api/grants/app",
            &session,
            put(json!("view-profile"))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        r.json(
            Method::PUT,
            "/api/grants/app",
            &session,
            put(json!(["fly"]))
        )
        .await
        .0,
        400
    );
    assert_eq!(
        r.json(
            Method::PUT,
            "/api/grants/nobody",
            &session,
            put(json!(["react"]))
        )
        .await
        .0,
        404
    );
    assert_eq!(r.get("/api/grants", &session).await.0, 200);
    assert_eq!(r.get("/api/grants", &as_owner).await.0, 200);
    assert_eq!(r.get("/api/grants", &as_app).await.0, 403);
    assert_eq!(r.get("/api/grants/app", &session).await.0, 200);
    assert_eq!(r.get("/api/grants/platform", &session).await.0, 404);
    assert_eq!(r.get("/api/grants/app/history", &session).await.0, 200);

    // Resources, by the application's carte.
    assert_eq!(r.get("/api/profile", &as_app).await.0, 200);
    assert_eq!(r.get("/api/profile", &[]).await.0, 401);
    assert_eq!(r.get("/api/settings", &as_app).await.0, 403);
    assert_eq!(r.get("/api/settings", &as_owner).await.0, 200);
    assert_eq!(
        r.json(Method::PUT, "/api/profile", &as_owner, json!({"bio": "hi"}))
            .await
            .0,
        200
    );
    assert_eq!(
        r.json(
            Method::PUT,
            "/api/settings",
            &as_owner,
            json!({"theme": "dark"})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        r.json(Method::PUT, "/api/settings", &as_owner, json!([1]))
            .await
            .0,
        400
    );

    // Forward authentication.
    assert_eq!(
        r.get("/auth/check?scope=view-profile", &as_app).await.0,
        200
    );
    assert_eq!(
        r.get("/auth/check?scope=view-settings", &as_app).await.0,
        403
    );
    assert_eq!(r.get("/auth/check", &as_app).await.0, 400);
    assert_eq!(
        r.get(
            "/auth/check?scope=view-profile",
            &[("authorization", "Carte x")]
        )
        .await
        .0,
        401
    );

    // Peers.
    let bare = app.carte("alice", VIEW_PROFILE, 0).sign(&app.signing);
    assert_eq!(
        r.json(
            Method::POST,
            "/api/cartes/verify",
            &[],
            json!({ "carte": bare })
        )
        .await
        .0,
        200
    );
    assert_eq!(
        r.json(
            Method::POST,
            "/api/cartes/verify",
            &[],
            json!({ "carte": "x" })
        )
        .await
        .0,
        401
    );
    assert_eq!(
        r.json(Method::POST, "/api/cartes/verify", &[], json!({}))
            .await
            .0,
        400
    );

    // Controlled accounts.
    let make = format!(
        "Carte {}",
        platform.carte("alice", 0, 0).sign(&platform.signing)
    );
    let as_platform = [("authorization", make.as_str())];
    assert_eq!(
        r.json(
            Method::POST,
            "/api/owners",
            &as_platform,
            json!({"name": "carol"})
        )
        .await
        .0,
        201
    );
    assert_eq!(
        r.json(
            Method::POST,
            "/api/owners",
            &as_platform,
            json!({"name": "carol"})
        )
        .await
        .0,
        409
    );
    assert_eq!(
        r.json(
            Method::POST,
            "/api/owners",
            &as_app,
            json!({"name": "dave"})
        )
        .await
        .0,
        403
    );
    let mut for_carol = platform.carte("alice", 0, 0);
    for_carol.subject = Some(Name::parse("carol").unwrap());
    let for_carol = format!("Carte {}", for_carol.sign(&platform.signing));
    assert_eq!(
        r.json(
            Method::POST,
            "/auth/login",
            &[("authorization", for_carol.as_str()), ("origin", PLATFORM)],
            json!({}),
        )
        .await
        .0,
        200
    );
    assert_eq!(
        r.json(
            Method::POST,
            "/auth/login",
            &[("authorization", make.as_str())],
            json!({})
        )
        .await
        .0,
        403
    );
    assert_eq!(
        r.send(
            Method::OPTIONS,
            "/auth/login",
            &[("origin", PLATFORM)],
            Bytes::new()
        )
        .await
        .0,
        204
    );
    assert_eq!(
        r.send(
            Method::OPTIONS,
            "/auth/login",
            &[("origin", "https://evil.example")],
            Bytes::new()
        )
        .await
        .0,
        403
    );
    assert_eq!(
        r.send(
            Method::DELETE,
            "/api/owners/carol",
            &as_platform,
            Bytes::new()
        )
        .await
        .0,
        200
    );
    assert_eq!(
        r.send(
            Method::DELETE,
            "/api/owners/carol",
            &as_platform,
            Bytes::new()
        )
        .await
        .0,
        404
    );

    // Revocation.
    assert_eq!(
        r.send(Method::DELETE, "/api/grants/app", &session, Bytes::new())
            .await
            .0,
        200
    );
    assert_eq!(
        r.send(Method::DELETE, "/api/grants/app", &session, Bytes::new())
            .await
            .0,
        404
    );
    assert_eq!(
        r.send(Method::DELETE, "/api/grants", &session, Bytes::new())
            .await
            .0,
        400
    );
    assert_eq!(
        r.send(
            Method::DELETE,
            "/api/grants?all=true",
            &session,
            Bytes::new()
        )
        .await
        .0,
        200
    );

    // The registry.
    let newcomer = Identity::new("newcomer", 11);
    let op = newcomer.register_op("https://n.example/", &[], 0);
    let cbor = [("content-type", "application/cbor")];
    assert_eq!(
        r.send(Method::POST, "/registry/ops", &cbor, op.clone().into())
            .await
            .0,
        201
    );
    assert_eq!(
        r.send(Method::POST, "/registry/ops", &cbor, op.into())
            .await
            .0,
        409
    );
    assert_eq!(
        r.send(Method::POST, "/registry/ops", &cbor, vec![0u8; 3].into())
            .await
            .0,
        400
    );
    assert_eq!(r.get("/registry/names/App", &[]).await.0, 200);
    assert_eq!(r.get("/registry/names/nobody", &[]).await.0, 404);
    let at = format!("/registry/names/app/key?at={}", now());
    assert_eq!(r.get(&at, &[]).await.0, 200);
    assert_eq!(r.get("/registry/names/app/key?at=1", &[]).await.0, 404);
    assert_eq!(r.get("/registry/names/app/key", &[]).await.0, 400);
    assert_eq!(r.get("/registry/log?from=0&limit=2", &[]).await.0, 200);
    assert_eq!(r.get("/registry/log?from=x", &[]).await.0, 400);
    assert_eq!(r.get("/registry/checkpoint", &[]).await.0, 200);
    assert_eq!(
        r.get("/registry/proof/inclusion?index=0&size=2", &[])
            .await
            .0,
        200
    );
    assert_eq!(
        r.get("/registry/proof/inclusion?index=2&size=2", &[])
            .await
            .0,
        400
    );
    assert_eq!(
        r.get("/registry/proof/consistency?from=1&to=2", &[])
            .await
            .0,
        200
    );
    assert_eq!(
        r.get("/registry/proof/consistency?from=1", &[]).await.0,
        400
    );
    assert_eq!(r.get("/registry/names/app/proof", &[]).await.0, 200);
    assert_eq!(
        r.get("/registry/names/nobody/proof?known=1", &[]).await.0,
        200
    );
    assert_eq!(r.get("/registry/names/app/proof?known=x", &[]).await.0, 400);
    assert_eq!(r.get("/registry/metadata", &[]).await.0, 200);

    let samples = dir.path().join("samples.json");
    std::fs::write(&samples, serde_json::to_vec(&r.samples).unwrap()).unwrap();
    let summary = check(&python, Some(&samples));
    println!("{summary}");
}

/// Pages and endpoints the document does not describe, with the methods they allow.
const UNDOCUMENTED: &[(&str, &str)] = &[
    ("/", "GET"),
    ("/login", "GET, POST"),
    ("/logout", "POST"),
    ("/setup", "GET, POST"),
    ("/setup/words", "POST"),
    ("/grant", "GET, POST"),
    ("/signup", "GET, POST"),
    ("/grants/app", "GET, POST"),
    ("/grants/app/revoke", "GET, POST"),
    ("/revoke-all", "GET, POST"),
    ("/sessions", "GET"),
    ("/sessions/end-others", "POST"),
    ("/password", "GET, POST"),
    ("/admin", "GET"),
    ("/auth/continue", "GET"),
    ("/witness/latest", "GET"),
    ("/witness/add-checkpoint", "POST"),
    ("/registry/tile/0/000", "GET"),
];

#[tokio::test(flavor = "multi_thread")]
async fn every_405_names_the_allowed_methods() {
    let dir = tempdir();
    let mut config = Node::embedded_config(dir.path(), "alice");
    config.witness_name = Some("witness.example".into());
    let node = Node::start(config).await;
    let doc: Value = serde_json::from_str(include_str!("../data/openapi.json")).unwrap();
    let mut paths: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, ops)| {
            let mut methods: Vec<String> = ops
                .as_object()
                .unwrap()
                .keys()
                .filter(|m| *m != "parameters")
                .map(|m| m.to_uppercase())
                .collect();
            methods.sort();
            let path = path.replace("{app}", "app").replace("{name}", "alice");
            (path, methods.join(", "))
        })
        .collect();
    paths.extend(
        UNDOCUMENTED
            .iter()
            .map(|(p, m)| (p.to_string(), m.to_string())),
    );
    let http = HttpClient::new();
    let mut checked = 0;
    for (path, allowed) in &paths {
        let mut want: Vec<&str> = allowed.split(", ").collect();
        want.sort();
        for method in ["GET", "PUT", "POST", "DELETE", "PATCH"] {
            if want.contains(&method) {
                continue;
            }
            let r = http
                .send(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    &format!("{}{path}", node.url()),
                    &[],
                    Bytes::new(),
                )
                .await
                .unwrap();
            assert_eq!(r.status, 405, "{method} {path}");
            let allow = r
                .headers
                .get("allow")
                .unwrap_or_else(|| panic!("{method} {path}: 405 without Allow"))
                .to_str()
                .unwrap();
            let mut got: Vec<&str> = allow.split(", ").collect();
            got.sort();
            assert_eq!(got, want, "{method} {path}");
            checked += 1;
        }
    }
    assert!(checked > 80, "{checked}");
}
