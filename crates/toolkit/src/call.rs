//! Calling nodes: admin cartes signed and renewed per (user, scope), one retry after a
//! clock-related refusal, and typed errors for a missing grant.

use hyper::body::Bytes;
use hyper::{Method, StatusCode};

use super::{nonce, App, ClientError, RENEW_BEFORE};
use crate::outbound::Reply;
use grant_wire::carte::Carte;
use grant_wire::name::Name;
use grant_wire::scope::Scope;

impl App {
    pub async fn get(
        &self,
        user: &Name,
        path: &str,
        scope: Scope,
    ) -> Result<serde_json::Value, ClientError> {
        self.call(user, Method::GET, path, scope, None).await
    }

    pub async fn post(
        &self,
        user: &Name,
        path: &str,
        scope: Scope,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        self.call(user, Method::POST, path, scope, Some(body)).await
    }

    pub async fn put(
        &self,
        user: &Name,
        path: &str,
        scope: Scope,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        self.call(user, Method::PUT, path, scope, Some(body)).await
    }

    pub async fn delete(
        &self,
        user: &Name,
        path: &str,
        scope: Scope,
    ) -> Result<serde_json::Value, ClientError> {
        self.call(user, Method::DELETE, path, scope, None).await
    }

    /// Calls `user`'s node with a fresh admin carte (audience = the user, admin scope =
    /// `scope`). On `401 carte.expired` or `carte.not-begun` it learns the node's clock from
    /// its `Date` header and retries once with a new carte; a 403 for a missing grant becomes
    /// [`ClientError::MissingScope`]. On `410 owner.moved` it looks the user's node up in the
    /// registry again (never trusting the old node's word for where), and, if the registry
    /// names another node, remembers it and retries there once.
    pub async fn call(
        &self,
        user: &Name,
        method: Method,
        path: &str,
        scope: Scope,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, ClientError> {
        let mut node = self.node_of(user).await?;
        let mut fresh = false;
        let mut moved = false;
        loop {
            let carte = self.admin_carte(user, scope, &node, fresh);
            let auth = format!("Carte {carte}");
            let reply = self
                .http
                .send(
                    method.clone(),
                    &format!("{node}{path}"),
                    &[
                        ("authorization", &auth),
                        ("content-type", "application/json"),
                    ],
                    body.as_ref()
                        .map(|b| Bytes::from(b.to_string()))
                        .unwrap_or_default(),
                )
                .await
                .map_err(|e| ClientError::Unreachable(e.to_string()))?;
            if reply.status.is_success() {
                return Ok(reply.json().unwrap_or(serde_json::Value::Null));
            }
            let code = reply.error_code().unwrap_or_default();
            match (reply.status, code.as_str()) {
                (StatusCode::UNAUTHORIZED, "carte.expired" | "carte.not-begun") if !fresh => {
                    self.learn_clock(&node, &reply);
                    fresh = true;
                }
                (StatusCode::GONE, "owner.moved") if !moved => {
                    moved = true;
                    let home = self.rediscover(user).await?;
                    if home == node {
                        return Err(ClientError::Refused {
                            status: 410,
                            code,
                            message: format!(
                                "{user} has moved away from {node}, and the registry does not \
                                 name its new node yet"
                            ),
                        });
                    }
                    node = home;
                }
                (StatusCode::FORBIDDEN, "grant.missing-scope") => {
                    let missing = reply
                        .json::<serde_json::Value>()
                        .and_then(|v| {
                            v["missing"].as_array().map(|a| {
                                a.iter()
                                    .filter_map(|s| s.as_str().map(str::to_owned))
                                    .collect()
                            })
                        })
                        .unwrap_or_default();
                    return Err(ClientError::MissingScope(missing));
                }
                (status, _) => {
                    let v: serde_json::Value = reply.json().unwrap_or_default();
                    return Err(ClientError::Refused {
                        status: status.as_u16(),
                        code,
                        message: v["message"].as_str().unwrap_or("").to_owned(),
                    });
                }
            }
        }
    }

    /// The node URL of `user`: from the grant book, else discovered.
    pub(crate) async fn node_of(&self, user: &Name) -> Result<String, ClientError> {
        if let Some(entry) = self.book.get(user) {
            return Ok(entry.node_url);
        }
        Ok(self.discover(user).await?.url)
    }

    /// `user`'s node as the registry names it now (asked afresh), remembered in the grant
    /// book.
    async fn rediscover(&self, user: &Name) -> Result<String, ClientError> {
        let url = self.node_url(user, true).await?;
        self.book.set_node(user, &url).await?;
        Ok(url)
    }

    /// A cached admin carte, re-signed when new, near its deadline or when `fresh`.
    fn admin_carte(&self, user: &Name, scope: Scope, node: &str, fresh: bool) -> String {
        let offset = *self
            .offsets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(node)
            .unwrap_or(&0);
        let now = self.clock.now().saturating_add_signed(offset);
        let key = (user.clone(), scope.bits());
        let mut cache = self.cartes.lock().unwrap_or_else(|p| p.into_inner());
        if !fresh {
            if let Some((wire, deadline)) = cache.get(&key) {
                if *deadline > now + RENEW_BEFORE {
                    return wire.clone();
                }
            }
        }
        let mut c = Carte::new(
            self.name.clone(),
            now.saturating_sub(5),
            now + self.ttl,
            nonce(),
        );
        c.audience = Some(user.clone());
        c.admin_scope = scope;
        let wire = c.sign(&self.key);
        if cache.len() >= crate::MAX_CACHED {
            cache.clear();
        }
        cache.insert(key, (wire.clone(), c.deadline));
        wire
    }

    /// Records how far `node`'s clock is from ours, from its `Date` header.
    fn learn_clock(&self, node: &str, reply: &Reply) {
        let Some(date) = reply
            .headers
            .get("date")
            .and_then(|d| d.to_str().ok())
            .and_then(|d| httpdate::parse_http_date(d).ok())
        else {
            return;
        };
        let theirs = date
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let offset = theirs - self.clock.now() as i64;
        let mut offsets = self.offsets.lock().unwrap_or_else(|p| p.into_inner());
        if offsets.len() >= crate::MAX_CACHED {
            offsets.clear();
        }
        offsets.insert(node.to_owned(), offset);
    }
}
