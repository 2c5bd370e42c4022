//! Names: the one identifier for owners, nodes and applications.
//!
//! A name is parsed once, at the edge, into [`Name`]; from then on only the canonical form
//! travels. The canonical form is the NFC normalisation of the full Unicode case folding of the
//! NFC input, so `Alice`, `ALICE` and `alice` are one name, and it is what every comparison,
//! storage key and URL uses. This module owns the character rules and the UTS #39 confusable
//! skeleton; it does not decide who may hold a name (that is the registry's job).

use std::fmt;

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;
use unicode_security::{GeneralSecurityProfile, MixedScript};

/// The longest name, in characters of its canonical form.
pub const MAX_CHARS: usize = 64;

/// Input longer than this many bytes is refused before any Unicode work is done on it: no
/// 64-character name needs more, even in the widest script after case folding.
const MAX_INPUT_BYTES: usize = MAX_CHARS * 4 * 3;

/// A canonical name. Only [`Name::parse`] and [`Name::parse_canonical`] build one.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(Box<str>);

/// Why a string is not a name. Every variant maps to the stable code `name.invalid`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name is longer than {MAX_CHARS} characters")]
    TooLong,
    #[error("name may not contain {0:?}; use letters, digits, '-' and '.'")]
    BadChar(char),
    #[error("name may not start or end with '-' or '.', nor start with a combining mark")]
    BadEdge,
    #[error("name mixes scripts; use letters of a single script")]
    MixedScript,
    #[error("name is not in canonical form (expected {0:?})")]
    NotCanonical(String),
}

impl NameError {
    /// The stable error code clients match on.
    pub fn code(&self) -> &'static str {
        "name.invalid"
    }
}

impl Name {
    /// Parses any spelling of a name into its canonical form, applying every rule.
    pub fn parse(input: &str) -> Result<Name, NameError> {
        if input.is_empty() {
            return Err(NameError::Empty);
        }
        if input.len() > MAX_INPUT_BYTES {
            return Err(NameError::TooLong);
        }
        if input.is_ascii() {
            // Fast path, exactly equivalent to the general one: ASCII is already NFC, its full
            // case folding is ASCII lowercasing, ASCII letters are all Latin and digits, '-'
            // and '.' belong to every script. Most names on the hot path (carte fields) take it.
            let canonical = input.to_ascii_lowercase();
            check_rules(&canonical)?;
            return Ok(Name(canonical.into_boxed_str()));
        }
        let nfc: String = input.nfc().collect();
        let folded = caseless::default_case_fold_str(&nfc);
        let canonical: String = folded.nfc().collect();
        check_rules(&canonical)?;
        Ok(Name(canonical.into_boxed_str()))
    }

    /// Parses a name that must already be canonical, as in signed wire formats where a second
    /// spelling of the same name would make two byte strings for one value.
    pub fn parse_canonical(input: &str) -> Result<Name, NameError> {
        let name = Name::parse(input)?;
        if &*name.0 != input {
            return Err(NameError::NotCanonical(name.0.into_string()));
        }
        Ok(name)
    }

    /// The canonical string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The confusable skeleton of the canonical form: two names whose skeletons are equal look
    /// alike, and the registry refuses the second one.
    ///
    /// It is the UTS #39 skeleton brought into the same folding as names. UTS #39 maps to
    /// prototypes of either case (`0` → `O`, `1` → `l`), while names are compared case-folded,
    /// so `0` and `o` would stay apart; the skeleton is therefore case-folded too, and then a
    /// few pairs that UTS #39 leaves distinct but that look alike in the lower case every
    /// name is shown in are folded together ([`LOOKALIKES`]). Any function of the name gives
    /// an equivalence, so the comparison stays consistent however the pairs chain.
    pub fn skeleton(&self) -> String {
        self.skeleton_of(SkeletonRules::V2)
    }

    /// The skeleton under `rules`: the registry judges each log entry by the rules in force
    /// at its registry time (see `registry::rules::skeleton_rules_at`), so a log accepted
    /// under earlier rules stays readable.
    pub fn skeleton_of(&self, rules: SkeletonRules) -> String {
        if rules == SkeletonRules::V1 {
            return unicode_security::skeleton(&self.0).collect();
        }
        let uts39: String = unicode_security::skeleton(&self.0).collect();
        let folded = caseless::default_case_fold_str(&uts39);
        let mut out = String::with_capacity(folded.len());
        for c in folded.chars() {
            match LOOKALIKES.iter().find(|(from, _)| *from == c) {
                Some((_, to)) => out.push_str(to),
                None => out.push(c),
            }
        }
        out
    }
}

/// The confusable-skeleton rules, by version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkeletonRules {
    /// UTS #39's skeleton as it is (`0` and `o` stay apart).
    V1,
    /// Case-folded, with the look-alike pairs of [`LOOKALIKES`].
    V2,
}

/// Look-alikes in lower case that UTS #39 keeps apart, each character mapped to its prototype
/// after case folding. Characters map to strings, never pairs of characters to one, so the map
/// works letter by letter and a substitution anywhere in a name gives the same result (`w` →
/// `vv`, not `vv` → `w`; `rn`/`m` is UTS #39's own: both become `rn`). Changing this list
/// changes stored skeletons: add a migration step that recomputes them
/// (`store::registry::recompute_skeletons`).
pub const LOOKALIKES: [(char, &str); 4] = [('i', "l"), ('5', "s"), ('w', "vv"), ('d', "cl")];

fn check_rules(canonical: &str) -> Result<(), NameError> {
    let mut count = 0usize;
    for c in canonical.chars() {
        count += 1;
        if count > MAX_CHARS {
            return Err(NameError::TooLong);
        }
        let allowed = c == '-'
            || c == '.'
            || ((c.is_alphabetic() || c.is_numeric() || is_combining_mark(c))
                && c.identifier_allowed());
        if !allowed {
            return Err(NameError::BadChar(c));
        }
    }
    let first = canonical.chars().next().ok_or(NameError::Empty)?;
    let last = canonical.chars().next_back().ok_or(NameError::Empty)?;
    if matches!(first, '-' | '.') || matches!(last, '-' | '.') || is_combining_mark(first) {
        return Err(NameError::BadEdge);
    }
    if !canonical.is_single_script() {
        return Err(NameError::MixedScript);
    }
    Ok(())
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({:?})", &*self.0)
    }
}

impl std::str::FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Name, NameError> {
        Name::parse(s)
    }
}

impl serde::Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Name, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Name::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_and_letter_look_alikes_share_a_skeleton() {
        let sk = |s: &str| Name::parse(s).unwrap().skeleton();
        assert_eq!(sk("g00gle"), sk("google"));
        assert_eq!(sk("paypa1"), sk("paypal"));
        assert_eq!(sk("paypai"), sk("paypal"));
        assert_eq!(sk("5hop"), sk("shop"));
        assert_eq!(sk("rnail"), sk("mail"));
        assert_eq!(sk("vvave"), sk("wave"));
        assert_eq!(sk("clove"), sk("dove"));
        assert_ne!(sk("google"), sk("goggle"));
        // Found by the property test below: folding "vv" into "w" depended on where the
        // substitution happened; mapping "w" to "vv" does not.
        assert_eq!(sk("vvv"), sk("vw"));
    }

    proptest::proptest! {
        /// Any spelling made from a name by look-alike substitutions (and case changes) has
        /// the name's skeleton.
        #[test]
        fn look_alike_spellings_share_the_skeleton(
            base in "[a-z]{1,12}",
            picks in proptest::collection::vec(0usize..64, 12),
            upper in proptest::collection::vec(proptest::bool::ANY, 12),
        ) {
            const PAIRS: [(&str, &[&str]); 7] = [
                ("o", &["0", "O"]),
                ("l", &["1", "I", "i"]),
                ("i", &["1", "l", "I"]),
                ("s", &["5", "S"]),
                ("m", &["rn"]),
                ("w", &["vv"]),
                ("d", &["cl"]),
            ];
            let mut variant = String::new();
            for (i, c) in base.chars().enumerate() {
                let c = c.to_string();
                let alternatives = PAIRS.iter().find(|(k, _)| *k == c).map(|(_, v)| *v);
                let out = match alternatives {
                    Some(v) => v[picks[i] % v.len()].to_owned(),
                    None if upper[i] => c.to_uppercase(),
                    None => c,
                };
                variant.push_str(&out);
            }
            let original = Name::parse(&base).unwrap();
            if let Ok(spelled) = Name::parse(&variant) {
                proptest::prop_assert_eq!(spelled.skeleton(), original.skeleton(), "{} ~ {}", variant, base);
            }
        }
    }

    #[test]
    fn case_variants_are_one_name() {
        assert_eq!(Name::parse("Alice").unwrap(), Name::parse("alice").unwrap());
        assert_eq!(Name::parse("ALICE").unwrap().as_str(), "alice");
    }

    #[test]
    fn full_case_folding_is_used() {
        // Lowercasing leaves ß alone; case folding maps it to "ss".
        assert_eq!(Name::parse("Straße").unwrap().as_str(), "strasse");
    }

    #[test]
    fn nfc_and_nfd_spellings_are_one_name() {
        let nfd = "Jose\u{301}";
        let nfc = "jos\u{e9}";
        assert_eq!(Name::parse(nfd).unwrap().as_str(), nfc);
    }

    #[test]
    fn letters_of_other_scripts_are_names() {
        assert_eq!(Name::parse("Алиса").unwrap().as_str(), "алиса");
        assert!(Name::parse("日本語-2").is_ok());
        assert!(Name::parse("नमस्ते").is_ok());
        assert!(Name::parse("app.example-1").is_ok());
    }

    #[test]
    fn mixed_script_name_is_refused() {
        // Latin "a" followed by Cyrillic "lice" look-alikes.
        assert_eq!(Name::parse("a\u{43b}ice"), Err(NameError::MixedScript));
        assert_eq!(Name::parse("pаypal"), Err(NameError::MixedScript));
    }

    #[test]
    fn length_limits_hold() {
        assert_eq!(Name::parse(""), Err(NameError::Empty));
        assert!(Name::parse(&"a".repeat(64)).is_ok());
        assert_eq!(Name::parse(&"a".repeat(65)), Err(NameError::TooLong));
        assert_eq!(Name::parse(&"a".repeat(10_000)), Err(NameError::TooLong));
    }

    #[test]
    fn punctuation_and_edges_are_refused() {
        for bad in [
            "a b",
            "a_b",
            "a/b",
            "a@b",
            "a\u{0}",
            "<script>",
            "a\u{200d}b",
        ] {
            assert!(
                matches!(Name::parse(bad), Err(NameError::BadChar(_))),
                "{bad:?}"
            );
        }
        for bad in ["-a", "a-", ".a", "a.", "\u{301}a"] {
            assert_eq!(Name::parse(bad), Err(NameError::BadEdge), "{bad:?}");
        }
    }

    #[test]
    fn parse_canonical_refuses_other_spellings() {
        assert!(Name::parse_canonical("alice").is_ok());
        assert!(matches!(
            Name::parse_canonical("Alice"),
            Err(NameError::NotCanonical(_))
        ));
    }

    #[test]
    fn confusable_names_share_a_skeleton() {
        // An all-Cyrillic "аре" is a valid single-script name that looks like Latin "ape".
        let latin = Name::parse("ape").unwrap();
        let cyrillic = Name::parse("\u{430}\u{440}\u{435}").unwrap();
        assert_ne!(latin, cyrillic);
        assert_eq!(latin.skeleton(), cyrillic.skeleton());
        assert_eq!(
            Name::parse("rn").unwrap().skeleton(),
            Name::parse("m").unwrap().skeleton()
        );
        assert_ne!(
            Name::parse("alice").unwrap().skeleton(),
            Name::parse("bob").unwrap().skeleton()
        );
    }

    #[test]
    fn every_refusal_has_the_stable_code() {
        assert_eq!(NameError::MixedScript.code(), "name.invalid");
    }
}
