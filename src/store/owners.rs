//! Owner tables: owners with their password hashes, profiles and settings; one-time password
//! set-up tokens; login sessions. Tokens are stored only as blake3 hashes, so a copy of the
//! database does not let anyone log in.

use super::{Conn, StoreError};
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

/// Adds an owner; `false` if one of that name exists (another process may have added it at
/// the same moment).
pub fn insert_owner(conn: &Conn, owner: &Owner) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "INSERT INTO owners (name, password_hash, controller, email, created)
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name) DO NOTHING",
        &[
            &owner.name.as_str(),
            &owner.password_hash,
            &owner.controller.as_ref().map(Name::as_str),
            &owner.email,
            &(owner.created as i64),
        ],
    )? == 1)
}

pub fn owner(conn: &Conn, who: &Name) -> Result<Option<Owner>, StoreError> {
    conn.query_one(
        "SELECT password_hash, controller, email, created FROM owners WHERE name = ?1",
        &[&who.as_str()],
        |r| {
            Ok(Owner {
                name: who.clone(),
                password_hash: r.get(0)?,
                controller: r.get::<Option<String>>(1)?.map(name).transpose()?,
                email: r.get(2)?,
                created: r.get(3)?,
            })
        },
    )
}

/// Every owner's name, oldest first.
pub fn owner_names(conn: &Conn) -> Result<Vec<Name>, StoreError> {
    conn.query_all("SELECT name FROM owners ORDER BY created, name", &[], |r| {
        name(r.get(0)?)
    })
}

pub fn set_password(conn: &Conn, who: &Name, hash: &str) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE owners SET password_hash = ?2 WHERE name = ?1",
        &[&who.as_str(), &hash],
    )? == 1)
}

/// Replaces the password hash only if it is still `expected` (compare-and-swap): a change
/// checked against one password cannot overwrite a change made meanwhile. `false` if it moved.
pub fn replace_password(
    conn: &Conn,
    who: &Name,
    expected: Option<&str>,
    hash: &str,
) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE owners SET password_hash = ?3
         WHERE name = ?1 AND password_hash IS NOT DISTINCT FROM ?2",
        &[&who.as_str(), &expected, &hash],
    )? == 1)
}

/// A JSON document column (`profile` or `settings`).
#[derive(Debug, Clone, Copy)]
pub enum Document {
    Profile,
    Settings,
}

pub fn document(conn: &Conn, who: &Name, doc: Document) -> Result<String, StoreError> {
    let sql = match doc {
        Document::Profile => "SELECT profile FROM owners WHERE name = ?1",
        Document::Settings => "SELECT settings FROM owners WHERE name = ?1",
    };
    Ok(conn
        .query_one(sql, &[&who.as_str()], |r| r.get(0))?
        .unwrap_or_else(|| "{}".to_owned()))
}

/// Replaces a document; `false` if the owner is not here (it moved away meanwhile).
pub fn set_document(
    conn: &Conn,
    who: &Name,
    doc: Document,
    json: &str,
) -> Result<bool, StoreError> {
    let sql = match doc {
        Document::Profile => "UPDATE owners SET profile = ?2 WHERE name = ?1",
        Document::Settings => "UPDATE owners SET settings = ?2 WHERE name = ?1",
    };
    Ok(conn.execute(sql, &[&who.as_str(), &json])? == 1)
}

pub fn insert_setup_token(
    conn: &Conn,
    token_hash: &[u8; 32],
    who: &Name,
    expires: u64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO setup_tokens (token_hash, owner, expires) VALUES (?1, ?2, ?3)",
        &[&&token_hash[..], &who.as_str(), &(expires as i64)],
    )?;
    Ok(())
}

/// Stores a one-time login link's token: its owner and where it leads.
pub fn insert_login_token(
    conn: &Conn,
    token_hash: &[u8; 32],
    who: &Name,
    redirect: &str,
    expires: u64,
) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM login_tokens WHERE expires < ?1",
        &[&(expires.saturating_sub(LOGIN_TOKEN_TTL) as i64)],
    )?;
    conn.execute(
        "INSERT INTO login_tokens (token_hash, owner, redirect, expires) VALUES (?1, ?2, ?3, ?4)",
        &[
            &&token_hash[..],
            &who.as_str(),
            &redirect,
            &(expires as i64),
        ],
    )?;
    Ok(())
}

/// How long a login link works, seconds.
pub const LOGIN_TOKEN_TTL: u64 = 60;

/// Consumes a login token: its owner and redirect, if it existed and had not expired.
pub fn take_login_token(
    conn: &Conn,
    token_hash: &[u8; 32],
    now: u64,
) -> Result<Option<(Name, String)>, StoreError> {
    let row = conn.query_one(
        "DELETE FROM login_tokens WHERE token_hash = ?1 RETURNING owner, redirect, expires",
        &[&&token_hash[..]],
        |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?, r.get::<u64>(2)?)),
    )?;
    match row {
        Some((owner, redirect, expires)) if expires >= now => Ok(Some((name(owner)?, redirect))),
        _ => Ok(None),
    }
}

/// Consumes a set-up token: returns its owner if it existed and had not expired.
pub fn take_setup_token(
    conn: &Conn,
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
    conn: &Conn,
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
    conn: &Conn,
    sql: &str,
    token_hash: &[u8; 32],
    now: u64,
) -> Result<Option<Name>, StoreError> {
    let row = conn.query_one(sql, &[&&token_hash[..]], |r| {
        Ok((r.get::<String>(0)?, r.get::<u64>(1)?))
    })?;
    match row {
        Some((owner, expires)) if expires >= now => Ok(Some(name(owner)?)),
        _ => Ok(None),
    }
}

pub fn insert_session(conn: &Conn, s: &Session, now: u64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO sessions (id_hash, owner, csrf_secret, created, expires)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        &[
            &&s.id_hash[..],
            &s.owner.as_str(),
            &&s.csrf_secret[..],
            &(now as i64),
            &(s.expires as i64),
        ],
    )?;
    Ok(())
}

/// The live session with this id hash.
pub fn session(conn: &Conn, id_hash: &[u8; 32], now: u64) -> Result<Option<Session>, StoreError> {
    let row = conn.query_one(
        "SELECT owner, csrf_secret, expires FROM sessions WHERE id_hash = ?1",
        &[&&id_hash[..]],
        |r| Ok((r.get::<String>(0)?, r.get::<[u8; 32]>(1)?, r.get::<u64>(2)?)),
    )?;
    let Some((owner, csrf_secret, expires)) = row else {
        return Ok(None);
    };
    if expires < now {
        return Ok(None);
    }
    Ok(Some(Session {
        id_hash: *id_hash,
        owner: name(owner)?,
        csrf_secret,
        expires,
    }))
}

pub fn delete_session(conn: &Conn, id_hash: &[u8; 32]) -> Result<(), StoreError> {
    conn.execute("DELETE FROM sessions WHERE id_hash = ?1", &[&&id_hash[..]])?;
    Ok(())
}

/// Removes expired sessions, set-up tokens, used cartes and consent requests.
pub fn purge_expired(conn: &Conn, now: u64) -> Result<(), StoreError> {
    let now = now as i64;
    conn.execute("DELETE FROM sessions WHERE expires < ?1", &[&now])?;
    conn.execute("DELETE FROM setup_tokens WHERE expires < ?1", &[&now])?;
    conn.execute("DELETE FROM used_cartes WHERE deadline < ?1", &[&now])?;
    conn.execute("DELETE FROM pending_grants WHERE expires < ?1", &[&now])?;
    Ok(())
}
