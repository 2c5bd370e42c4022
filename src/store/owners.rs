//! Owner tables: owners with their password hashes, profiles and settings; one-time password
//! set-up tokens; login sessions. Tokens are stored only as blake3 hashes, so a copy of the
//! database does not let anyone log in.

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;
use crate::name::Name;

/// An owner hosted on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub name: Name,
    /// argon2id PHC string; `None` when password login is not possible.
    pub password_hash: Option<String>,
    /// The controller that created this owner, for controlled accounts.
    pub controller: Option<Name>,
    pub email: Option<String>,
    pub created: u64,
}

/// A live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id_hash: [u8; 32],
    pub owner: Name,
    pub csrf_secret: [u8; 32],
    pub expires: u64,
}

fn name(s: String) -> Result<Name, StoreError> {
    Name::parse_canonical(&s).map_err(|_| StoreError::Corrupt("a stored name is not canonical"))
}

pub fn insert_owner(conn: &Connection, owner: &Owner) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO owners (name, password_hash, controller, email, created)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            owner.name.as_str(),
            owner.password_hash,
            owner.controller.as_ref().map(Name::as_str),
            owner.email,
            owner.created as i64
        ],
    )?;
    Ok(())
}

pub fn owner(conn: &Connection, who: &Name) -> Result<Option<Owner>, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT password_hash, controller, email, created FROM owners WHERE name = ?1",
        )?
        .query_row([who.as_str()], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .optional()?;
    row.map(|(password_hash, controller, email, created)| {
        Ok(Owner {
            name: who.clone(),
            password_hash,
            controller: controller.map(name).transpose()?,
            email,
            created: created as u64,
        })
    })
    .transpose()
}

/// Every owner's name, oldest first.
pub fn owner_names(conn: &Connection) -> Result<Vec<Name>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT name FROM owners ORDER BY created, name")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    rows.map(|r| name(r?)).collect()
}

pub fn set_password(conn: &Connection, who: &Name, hash: &str) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE owners SET password_hash = ?2 WHERE name = ?1",
        params![who.as_str(), hash],
    )? == 1)
}

/// A JSON document column (`profile` or `settings`).
#[derive(Debug, Clone, Copy)]
pub enum Document {
    Profile,
    Settings,
}

impl Document {
    fn column(self) -> &'static str {
        match self {
            Document::Profile => "profile",
            Document::Settings => "settings",
        }
    }
}

pub fn document(conn: &Connection, who: &Name, doc: Document) -> Result<String, StoreError> {
    let sql = format!("SELECT {} FROM owners WHERE name = ?1", doc.column());
    Ok(conn
        .query_row(&sql, [who.as_str()], |r| r.get(0))
        .optional()?
        .unwrap_or_else(|| "{}".to_owned()))
}

pub fn set_document(
    conn: &Connection,
    who: &Name,
    doc: Document,
    json: &str,
) -> Result<(), StoreError> {
    let sql = format!("UPDATE owners SET {} = ?2 WHERE name = ?1", doc.column());
    conn.execute(&sql, params![who.as_str(), json])?;
    Ok(())
}

pub fn insert_setup_token(
    conn: &Connection,
    token_hash: &[u8; 32],
    who: &Name,
    expires: u64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO setup_tokens (token_hash, owner, expires) VALUES (?1, ?2, ?3)",
        params![&token_hash[..], who.as_str(), expires as i64],
    )?;
    Ok(())
}

/// Stores a one-time login link's token: its owner and where it leads.
pub fn insert_login_token(
    conn: &Connection,
    token_hash: &[u8; 32],
    who: &Name,
    redirect: &str,
    expires: u64,
) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM login_tokens WHERE expires < ?1",
        params![expires.saturating_sub(LOGIN_TOKEN_TTL) as i64],
    )?;
    conn.execute(
        "INSERT INTO login_tokens (token_hash, owner, redirect, expires) VALUES (?1, ?2, ?3, ?4)",
        params![&token_hash[..], who.as_str(), redirect, expires as i64],
    )?;
    Ok(())
}

/// How long a login link works, seconds.
pub const LOGIN_TOKEN_TTL: u64 = 60;

/// Consumes a login token: its owner and redirect, if it existed and had not expired.
pub fn take_login_token(
    conn: &Connection,
    token_hash: &[u8; 32],
    now: u64,
) -> Result<Option<(Name, String)>, StoreError> {
    let row: Option<(String, String, i64)> = conn
        .query_row(
            "DELETE FROM login_tokens WHERE token_hash = ?1 RETURNING owner, redirect, expires",
            [&token_hash[..]],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    match row {
        Some((owner, redirect, expires)) if expires as u64 >= now => Ok(Some((
            Name::parse_canonical(&owner)
                .map_err(|_| StoreError::Corrupt("a stored name is not canonical"))?,
            redirect,
        ))),
        _ => Ok(None),
    }
}

/// Consumes a set-up token: returns its owner if it existed and had not expired.
pub fn take_setup_token(
    conn: &Connection,
    token_hash: &[u8; 32],
    now: u64,
) -> Result<Option<Name>, StoreError> {
    setup_token(
        conn,
        "DELETE FROM setup_tokens WHERE token_hash = ?1 RETURNING owner, expires",
        token_hash,
        now,
    )
}

/// Whether a set-up token exists and is live, without consuming it.
pub fn peek_setup_token(
    conn: &Connection,
    token_hash: &[u8; 32],
    now: u64,
) -> Result<Option<Name>, StoreError> {
    setup_token(
        conn,
        "SELECT owner, expires FROM setup_tokens WHERE token_hash = ?1",
        token_hash,
        now,
    )
}

fn setup_token(
    conn: &Connection,
    sql: &str,
    token_hash: &[u8; 32],
    now: u64,
) -> Result<Option<Name>, StoreError> {
    let row: Option<(String, i64)> = conn
        .query_row(sql, [&token_hash[..]], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        Some((owner, expires)) if expires as u64 >= now => Ok(Some(name(owner)?)),
        _ => Ok(None),
    }
}

pub fn insert_session(conn: &Connection, s: &Session, now: u64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO sessions (id_hash, owner, csrf_secret, created, expires)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            &s.id_hash[..],
            s.owner.as_str(),
            &s.csrf_secret[..],
            now as i64,
            s.expires as i64
        ],
    )?;
    Ok(())
}

/// The live session with this id hash.
pub fn session(
    conn: &Connection,
    id_hash: &[u8; 32],
    now: u64,
) -> Result<Option<Session>, StoreError> {
    let row: Option<(String, Vec<u8>, i64)> = conn
        .prepare_cached("SELECT owner, csrf_secret, expires FROM sessions WHERE id_hash = ?1")?
        .query_row([&id_hash[..]], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((owner, csrf, expires)) = row else {
        return Ok(None);
    };
    if (expires as u64) < now {
        return Ok(None);
    }
    Ok(Some(Session {
        id_hash: *id_hash,
        owner: name(owner)?,
        csrf_secret: csrf
            .try_into()
            .map_err(|_| StoreError::Corrupt("a csrf secret is not 32 bytes"))?,
        expires: expires as u64,
    }))
}

pub fn delete_session(conn: &Connection, id_hash: &[u8; 32]) -> Result<(), StoreError> {
    conn.execute("DELETE FROM sessions WHERE id_hash = ?1", [&id_hash[..]])?;
    Ok(())
}

/// Removes expired sessions, set-up tokens, used cartes and consent requests.
pub fn purge_expired(conn: &Connection, now: u64) -> Result<(), StoreError> {
    let now = now as i64;
    conn.execute("DELETE FROM sessions WHERE expires < ?1", [now])?;
    conn.execute("DELETE FROM setup_tokens WHERE expires < ?1", [now])?;
    conn.execute("DELETE FROM used_cartes WHERE deadline < ?1", [now])?;
    conn.execute("DELETE FROM pending_grants WHERE expires < ?1", [now])?;
    Ok(())
}
