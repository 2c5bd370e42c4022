//! Scopes: what an application may do, as a `u64` bitmask.
//!
//! Bits 0–31 are the built-in catalogue, with the names and values of Moera's; bits 32–62 are
//! scopes a node defines in its configuration; bit 63 is reserved. A [`Catalogue`] turns
//! kebab-case names into bits and back. Unknown names are an error (`scope.unknown`), never
//! silently dropped: a request for a scope the node does not know must not quietly become a
//! request for less. The arithmetic (`∩`, `∪`, `\`) lives on [`Scope`] and knows nothing of names.

use std::fmt;

/// A set of scopes.
#[derive(
    Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Scope(u64);

impl Scope {
    /// The empty set.
    pub const NONE: Scope = Scope(0);
    /// The `grant` scope: the right to change grants, never given to an application.
    pub const GRANT: Scope = Scope(0x800_0000);
    /// Every bit a catalogue may name (bit 63 is reserved).
    pub const ALL_DEFINABLE: Scope = Scope(u64::MAX >> 1);

    /// A set from its raw bits, as carried in cartes and stored in the database.
    pub const fn from_bits(bits: u64) -> Scope {
        Scope(bits)
    }

    /// The raw bits.
    pub const fn bits(self) -> u64 {
        self.0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every scope in `other` is in `self`.
    pub const fn contains(self, other: Scope) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn intersection(self, other: Scope) -> Scope {
        Scope(self.0 & other.0)
    }

    pub const fn union(self, other: Scope) -> Scope {
        Scope(self.0 | other.0)
    }

    /// The scopes in `self` that are not in `other`.
    pub const fn difference(self, other: Scope) -> Scope {
        Scope(self.0 & !other.0)
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({:#x})", self.0)
    }
}

/// The built-in scopes: Moera's catalogue, name, bit and a plain-words description that the
/// consent page shows.
pub const BUILTIN: &[(&str, u64, &str)] = &[
    ("other", 0x1, "other actions"),
    ("view-content", 0x4, "view your non-public content"),
    ("add-post", 0x8, "add posts"),
    ("update-post", 0x10, "edit posts"),
    ("add-comment", 0x20, "add comments"),
    ("update-comment", 0x40, "edit comments"),
    ("react", 0x80, "add reactions"),
    ("delete-own-content", 0x100, "delete your own content"),
    (
        "delete-others-content",
        0x200,
        "delete other people's content",
    ),
    (
        "view-people",
        0x400,
        "view your subscribers, subscriptions and friends",
    ),
    ("block", 0x800, "block people"),
    ("friend", 0x1000, "manage friends"),
    ("remote-identify", 0x2000, "identify you on other nodes"),
    ("drafts", 0x4000, "manage drafts"),
    ("view-feeds", 0x8000, "view your feeds"),
    ("update-feeds", 0x10000, "change your feeds"),
    ("name", 0x20000, "manage your registered name"),
    ("plugins", 0x40000, "manage plugins"),
    ("view-profile", 0x80000, "view your profile"),
    ("update-profile", 0x100000, "change your profile"),
    ("sheriff", 0x200000, "act as a sheriff"),
    ("view-settings", 0x400000, "view your settings"),
    ("update-settings", 0x800000, "change your settings"),
    ("subscribe", 0x1000000, "manage subscriptions"),
    ("tokens", 0x2000000, "manage tokens"),
    ("user-lists", 0x4000000, "manage user lists"),
    ("grant", 0x8000000, "grant rights to other applications"),
    ("upload-public-media", 0x10000000, "upload public media"),
    ("upload-private-media", 0x20000000, "upload private media"),
    ("lease-media", 0x40000000, "lease media"),
];

/// The lowest bit a node may give to a scope of its own.
pub const FIRST_CUSTOM_BIT: u32 = 32;
/// The highest bit a node may give to a scope of its own.
pub const LAST_CUSTOM_BIT: u32 = 62;

/// Why a scope string or definition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    #[error("unknown scope {0:?}")]
    Unknown(String),
    #[error("custom scope {name:?}: {reason}")]
    BadDefinition { name: String, reason: &'static str },
}

impl ScopeError {
    /// The stable error code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            ScopeError::Unknown(_) => "scope.unknown",
            ScopeError::BadDefinition { .. } => "scope.bad-definition",
        }
    }
}

/// One named scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeDef {
    pub name: String,
    pub bit: u32,
    pub description: String,
}

/// The scopes a node knows: the built-ins plus its own.
#[derive(Debug, Clone)]
pub struct Catalogue {
    defs: Vec<ScopeDef>,
}

impl Default for Catalogue {
    fn default() -> Catalogue {
        Catalogue::builtin()
    }
}

impl Catalogue {
    /// The built-in catalogue alone.
    pub fn builtin() -> Catalogue {
        let defs = BUILTIN
            .iter()
            .map(|&(name, value, description)| ScopeDef {
                name: name.to_owned(),
                bit: value.trailing_zeros(),
                description: description.to_owned(),
            })
            .collect();
        Catalogue { defs }
    }

    /// The built-ins plus a node's own scopes. Each custom scope names its bit explicitly
    /// (32–62), so that reordering a config file can never change what a stored grant means.
    pub fn with_custom(custom: &[ScopeDef]) -> Result<Catalogue, ScopeError> {
        let mut catalogue = Catalogue::builtin();
        for def in custom {
            let bad = |reason| ScopeError::BadDefinition {
                name: def.name.clone(),
                reason,
            };
            if !(FIRST_CUSTOM_BIT..=LAST_CUSTOM_BIT).contains(&def.bit) {
                return Err(bad("bit must be between 32 and 62"));
            }
            if !is_kebab_case(&def.name) {
                return Err(bad("name must be kebab-case: a-z, 0-9 and single '-'"));
            }
            if catalogue.defs.iter().any(|d| d.name == def.name) {
                return Err(bad("name is already defined"));
            }
            if catalogue.defs.iter().any(|d| d.bit == def.bit) {
                return Err(bad("bit is already used"));
            }
            catalogue.defs.push(def.clone());
        }
        Ok(catalogue)
    }

    /// Every scope this catalogue defines, in bit order.
    pub fn defs(&self) -> impl Iterator<Item = &ScopeDef> {
        let mut order: Vec<&ScopeDef> = self.defs.iter().collect();
        order.sort_by_key(|d| d.bit);
        order.into_iter()
    }

    /// The union of every defined scope.
    pub fn all(&self) -> Scope {
        Scope(self.defs.iter().fold(0, |acc, d| acc | (1u64 << d.bit)))
    }

    /// Parses `view-profile,update-profile` (commas and/or white space between names; empty
    /// parts are skipped, so an empty string is the empty set).
    pub fn parse(&self, text: &str) -> Result<Scope, ScopeError> {
        let mut bits = 0u64;
        for part in text.split(|c: char| c == ',' || c.is_whitespace()) {
            if part.is_empty() {
                continue;
            }
            bits |= self.bit_of(part)?;
        }
        Ok(Scope(bits))
    }

    /// Parses a list of names, as sent in JSON.
    pub fn parse_list<S: AsRef<str>>(&self, names: &[S]) -> Result<Scope, ScopeError> {
        names
            .iter()
            .try_fold(0u64, |acc, n| Ok(acc | self.bit_of(n.as_ref())?))
            .map(Scope)
    }

    fn bit_of(&self, name: &str) -> Result<u64, ScopeError> {
        self.defs
            .iter()
            .find(|d| d.name == name)
            .map(|d| 1u64 << d.bit)
            .ok_or_else(|| ScopeError::Unknown(truncate(name, 64)))
    }

    /// The names of the scopes in `scope`, in bit order. Bits this catalogue does not define
    /// (which only a raw bitmask from outside can carry) are left out.
    pub fn names(&self, scope: Scope) -> Vec<&str> {
        self.defs()
            .filter(|d| scope.0 & (1u64 << d.bit) != 0)
            .map(|d| d.name.as_str())
            .collect()
    }

    /// The descriptions of the scopes in `scope`, in bit order.
    pub fn describe(&self, scope: Scope) -> Vec<(&str, &str)> {
        self.defs()
            .filter(|d| scope.0 & (1u64 << d.bit) != 0)
            .map(|d| (d.name.as_str(), d.description.as_str()))
            .collect()
    }

    /// `view-profile,update-profile`: the form [`Catalogue::parse`] reads back.
    pub fn format(&self, scope: Scope) -> String {
        self.names(scope).join(",")
    }
}

fn is_kebab_case(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_values_match_moera() {
        let c = Catalogue::builtin();
        assert_eq!(c.parse("view-profile").unwrap().bits(), 0x80000);
        assert_eq!(c.parse("grant").unwrap(), Scope::GRANT);
        assert_eq!(c.parse("lease-media").unwrap().bits(), 0x40000000);
        assert_eq!(c.parse("other").unwrap().bits(), 0x1);
        assert_eq!(c.all().bits(), 0x7fff_fffd);
    }

    #[test]
    fn comma_and_space_separated_lists_parse() {
        let c = Catalogue::builtin();
        let want = Scope::from_bits(0x80000 | 0x100000);
        assert_eq!(c.parse("view-profile,update-profile").unwrap(), want);
        assert_eq!(c.parse("view-profile update-profile").unwrap(), want);
        assert_eq!(c.parse(" view-profile, update-profile ,").unwrap(), want);
        assert_eq!(c.parse("").unwrap(), Scope::NONE);
        assert_eq!(
            c.parse_list(&["update-profile", "view-profile"]).unwrap(),
            want
        );
    }

    #[test]
    fn unknown_scope_is_an_error_not_dropped() {
        let c = Catalogue::builtin();
        let err = c.parse("view-profile,fly").unwrap_err();
        assert_eq!(err, ScopeError::Unknown("fly".into()));
        assert_eq!(err.code(), "scope.unknown");
        assert!(c.parse("View-Profile").is_err(), "names are case-sensitive");
    }

    #[test]
    fn format_round_trips_in_bit_order() {
        let c = Catalogue::builtin();
        let s = c.parse("update-settings,view-profile,react").unwrap();
        assert_eq!(c.format(s), "react,view-profile,update-settings");
        assert_eq!(c.parse(&c.format(s)).unwrap(), s);
    }

    #[test]
    fn custom_scopes_take_explicit_high_bits() {
        let def = |name: &str, bit| ScopeDef {
            name: name.into(),
            bit,
            description: "d".into(),
        };
        let c = Catalogue::with_custom(&[def("play-games", 32)]).unwrap();
        assert_eq!(c.parse("play-games").unwrap().bits(), 1u64 << 32);
        for (bad, bit) in [("x", 31), ("x", 63), ("Bad_Name", 40), ("react", 40)] {
            let err = Catalogue::with_custom(&[def(bad, bit)]).unwrap_err();
            assert_eq!(err.code(), "scope.bad-definition");
        }
        assert!(Catalogue::with_custom(&[def("a", 40), def("b", 40)]).is_err());
    }

    #[test]
    fn arithmetic() {
        let a = Scope::from_bits(0b1100);
        let b = Scope::from_bits(0b0110);
        assert_eq!(a.intersection(b).bits(), 0b0100);
        assert_eq!(a.union(b).bits(), 0b1110);
        assert_eq!(a.difference(b).bits(), 0b1000);
        assert!(a.contains(Scope::from_bits(0b1000)));
        assert!(!a.contains(b));
    }
}
