//! Recovery words: 24 BIP39 English words that stand for a name's updating key.
//!
//! The words encode 256 bits of entropy with BIP39's checksum (the `bip39` crate: word list,
//! checksum, parsing). The updating key's Ed25519 seed is derived from the entropy alone, not
//! from BIP39's PBKDF2 seed (which is for wallets and would tie us to its passphrase rules):
//!
//! ```text
//! seed = BLAKE3-derive_key(context = "grant-node 2026-12 recovery words: updating key v1",
//!                          key material = the 32 bytes of entropy)
//! ```
//!
//! The derivation is domain-separated by that context, so the same words used elsewhere give
//! an unrelated key. Pure: no I/O; callers supply the entropy or the text.

use ed25519_dalek::SigningKey;

/// The BLAKE3 context of the derivation (see the module comment). Changing it changes every
/// key derived from words: never do.
pub const CONTEXT: &str = "grant-node 2026-12 recovery words: updating key v1";

/// How many words.
pub const WORDS: usize = 24;

/// Why recovery words were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecoveryError {
    #[error("recovery words must be {WORDS} words; these are {0}")]
    WordCount(usize),
    #[error("word {0} ({1:?}) is not in the BIP39 English list")]
    UnknownWord(usize, String),
    #[error("the words' checksum does not match: a word is wrong or out of order")]
    Checksum,
    #[error("the recovery words do not parse: {0}")]
    Invalid(String),
}

impl RecoveryError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            RecoveryError::WordCount(_) => "recovery.word-count",
            RecoveryError::UnknownWord(..) => "recovery.unknown-word",
            RecoveryError::Checksum => "recovery.checksum",
            RecoveryError::Invalid(_) => "recovery.invalid",
        }
    }
}

/// 24 recovery words.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryWords(bip39::Mnemonic);

impl std::fmt::Debug for RecoveryWords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never printed by accident (logs, panics): they are the key.
        f.write_str("RecoveryWords(…)")
    }
}

impl RecoveryWords {
    /// The words for 32 bytes of entropy (from the system's random source).
    pub fn from_entropy(entropy: &[u8; 32]) -> RecoveryWords {
        RecoveryWords(bip39::Mnemonic::from_entropy(entropy).expect("32 bytes is a valid length"))
    }

    /// Fresh words.
    pub fn generate() -> anyhow::Result<RecoveryWords> {
        let mut entropy = [0u8; 32];
        getrandom::getrandom(&mut entropy)
            .map_err(|e| anyhow::anyhow!("the system's random source failed: {e}"))?;
        Ok(RecoveryWords::from_entropy(&entropy))
    }

    /// Words as a person typed them: any white space between them, any case.
    pub fn parse(text: &str) -> Result<RecoveryWords, RecoveryError> {
        let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
        if words.len() != WORDS {
            return Err(RecoveryError::WordCount(words.len()));
        }
        match bip39::Mnemonic::parse_in_normalized(bip39::Language::English, &words.join(" ")) {
            Ok(m) => Ok(RecoveryWords(m)),
            Err(bip39::Error::UnknownWord(i)) => Err(RecoveryError::UnknownWord(
                i + 1,
                words.get(i).cloned().unwrap_or_default(),
            )),
            Err(bip39::Error::InvalidChecksum) => Err(RecoveryError::Checksum),
            Err(e) => Err(RecoveryError::Invalid(e.to_string())),
        }
    }

    /// The words, in order.
    pub fn words(&self) -> Vec<&'static str> {
        self.0.words().collect()
    }

    /// The words as one line, separated by single spaces.
    pub fn phrase(&self) -> String {
        self.words().join(" ")
    }

    /// The updating key these words stand for.
    pub fn updating_key(&self) -> SigningKey {
        let (entropy, len) = self.0.to_entropy_array();
        SigningKey::from_bytes(&blake3::derive_key(CONTEXT, &entropy[..len]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_derive_a_fixed_key() {
        let words = RecoveryWords::from_entropy(&[7; 32]);
        assert_eq!(words.words().len(), 24);
        let again =
            RecoveryWords::parse(&words.phrase().to_uppercase().replace(' ', "\n  ")).unwrap();
        assert_eq!(again, words);
        // Pinned: another implementation of the README's derivation must get this key.
        assert_eq!(
            hex::encode(words.updating_key().verifying_key().as_bytes()),
            hex::encode(
                SigningKey::from_bytes(&blake3::derive_key(CONTEXT, &[7; 32]))
                    .verifying_key()
                    .as_bytes()
            )
        );
        assert_ne!(
            RecoveryWords::from_entropy(&[8; 32])
                .updating_key()
                .to_bytes(),
            words.updating_key().to_bytes()
        );
    }

    #[test]
    fn wrong_words_are_refused_with_their_reason() {
        let words = RecoveryWords::from_entropy(&[7; 32]).words();
        let text = |w: &[&str]| w.join(" ");
        assert_eq!(
            RecoveryWords::parse(&text(&words[..23])),
            Err(RecoveryError::WordCount(23))
        );
        let mut unknown = words.clone();
        unknown[4] = "grantnode";
        assert_eq!(
            RecoveryWords::parse(&text(&unknown)),
            Err(RecoveryError::UnknownWord(5, "grantnode".into()))
        );
        let mut swapped = words.clone();
        swapped.swap(0, 1);
        if swapped != words {
            assert_eq!(
                RecoveryWords::parse(&text(&swapped))
                    .err()
                    .map(|e| e.code()),
                Some("recovery.checksum")
            );
        }
    }
}
