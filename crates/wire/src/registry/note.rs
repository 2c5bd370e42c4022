//! Checkpoints in the C2SP form: a `tlog-checkpoint` body, signed as a C2SP `signed-note` with
//! the registry's Ed25519 key, and cosigned by witnesses with `cosignature/v1` (C2SP
//! `tlog-cosignature`). Pure: parsing, signing and checking over bytes, time passed in.
//!
//! The body is the standard three lines and two extension lines of our own:
//!
//! ```text
//! grant-node.registry/3b6a27bcceb6a42d      origin: fixed prefix + first 16 hex of the key
//! 42                                        tree size
//! 6Ue0G1uSF1F6cCMV1wXx4bqGeqLxxR2tS4bmzn4iMkQ=   RFC 6962 root, base64
//! map 1b2M2Y8AsgTpgAmY7PhCfg3b6l1rZ8s9qGfWpyLJ2zU=   name map root, base64
//! time 1764100000                           registry time of the checkpoint
//! ```
//!
//! The note parsing is `signed_note`'s and the body parsing `tlog_tiles`'; what we add is the
//! strict signature check (`verify_strict`, as for every other signature here) and the
//! cosignature algorithm, which `signed_note` does not know.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use signed_note::{Note, Signature as NoteSignature};

use super::RegistryError;

/// Signature type byte of an Ed25519 note signature (C2SP signed-note).
const ALG_ED25519: u8 = 0x01;
/// Signature type byte of a `cosignature/v1` (C2SP tlog-cosignature).
const ALG_COSIGNATURE_V1: u8 = 0x04;
/// The most cosignatures a note may carry before we refuse to look at it.
pub const MAX_SIGNATURES: usize = 32;

/// The origin line of the registry whose key is `key`.
pub fn origin_for(key: &VerifyingKey) -> String {
    format!("grant-node.registry/{}", &hex::encode(key.as_bytes())[..16])
}

/// `SHA-256(name || "\n" || alg || key)[:4]`, the key ID of C2SP signed-note.
pub fn key_id(name: &str, alg: u8, key: &VerifyingKey) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([alg]);
    h.update(key.as_bytes());
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// The registry's verifier key in the C2SP vkey form, `<origin>+<id>+<base64(0x01 || key)>`.
pub fn registry_vkey(key: &VerifyingKey) -> String {
    vkey(&origin_for(key), ALG_ED25519, key)
}

fn vkey(name: &str, alg: u8, key: &VerifyingKey) -> String {
    let mut data = vec![alg];
    data.extend_from_slice(key.as_bytes());
    format!(
        "{name}+{:08x}+{}",
        key_id(name, alg, key),
        STANDARD.encode(data)
    )
}

/// A registry checkpoint: what the registry's signature commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    /// RFC 6962 root of the log's first `size` entries.
    pub root: [u8; 32],
    /// Root of the name map after those entries ([`super::map`]).
    pub map_root: [u8; 32],
    pub time: u64,
}

impl Checkpoint {
    /// The checkpoint body (the signed text).
    pub fn text(&self) -> String {
        format!(
            "{}\n{}\n{}\nmap {}\ntime {}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root),
            STANDARD.encode(self.map_root),
            self.time
        )
    }

    /// The signed note: the body, a blank line and the registry's signature line.
    pub fn sign(&self, key: &SigningKey) -> Vec<u8> {
        let text = self.text();
        let sig = key.sign(text.as_bytes());
        let id = key_id(&self.origin, ALG_ED25519, &key.verifying_key());
        let mut line = id.to_be_bytes().to_vec();
        line.extend_from_slice(&sig.to_bytes());
        format!(
            "{text}\n\u{2014} {} {}\n",
            self.origin,
            STANDARD.encode(line)
        )
        .into_bytes()
    }

    /// Parses a body; `origin` must be the expected one.
    pub fn parse_text(text: &[u8], origin: &str) -> Result<Checkpoint, RegistryError> {
        let m = RegistryError::Malformed;
        let cp = tlog_tiles::Checkpoint::from_bytes(text).map_err(|_| m("malformed checkpoint"))?;
        if cp.origin() != origin {
            return Err(RegistryError::Untrusted(format!(
                "checkpoint is for the log {:?}, not {origin:?}",
                cp.origin()
            )));
        }
        let mut lines = cp.extension().lines();
        let map_root = lines
            .next()
            .and_then(|l| l.strip_prefix("map "))
            .and_then(|b| STANDARD.decode(b).ok())
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or(m("checkpoint has no map line"))?;
        let time = lines
            .next()
            .and_then(|l| l.strip_prefix("time "))
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or(m("checkpoint has no time line"))?;
        if lines.next().is_some() {
            return Err(m("checkpoint has unknown extension lines"));
        }
        Ok(Checkpoint {
            origin: cp.origin().to_owned(),
            size: cp.size(),
            root: cp.hash().0,
            map_root,
            time,
        })
    }
}

/// A checkpoint whose registry signature verified, with the note it came in (the registry's
/// signature and any cosignatures, not yet checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    /// The whole note as received.
    pub note: Vec<u8>,
    /// The signed body.
    pub text: Vec<u8>,
    signatures: Vec<(String, u32, Vec<u8>)>,
}

impl SignedCheckpoint {
    /// Parses a note and checks the registry's signature on it (strictly).
    pub fn verify(
        note: &[u8],
        registry_key: &VerifyingKey,
    ) -> Result<SignedCheckpoint, RegistryError> {
        let m = RegistryError::Malformed;
        let parsed = Note::from_bytes(note).map_err(|_| m("checkpoint is not a signed note"))?;
        let text = parsed.text().to_vec();
        let signatures = signature_lines(note)?;
        let origin = origin_for(registry_key);
        let id = key_id(&origin, ALG_ED25519, registry_key);
        let signed = signatures.iter().any(|(name, sig_id, sig)| {
            *name == origin
                && *sig_id == id
                && Signature::from_slice(sig)
                    .is_ok_and(|s| registry_key.verify_strict(&text, &s).is_ok())
        });
        if !signed {
            return Err(RegistryError::Untrusted(
                "checkpoint signature does not verify".into(),
            ));
        }
        Ok(SignedCheckpoint {
            checkpoint: Checkpoint::parse_text(&text, &origin)?,
            note: note.to_vec(),
            text,
            signatures,
        })
    }

    /// The witnesses among `witnesses` whose cosignature on this checkpoint verifies.
    pub fn cosigned_by<'a>(&self, witnesses: &'a [Witness]) -> Vec<&'a Witness> {
        witnesses
            .iter()
            .filter(|w| {
                self.signatures.iter().any(|(name, id, sig)| {
                    *name == w.name && *id == w.id && w.verify(&self.text, sig).is_some()
                })
            })
            .collect()
    }

    /// This note with `lines` (signature lines, as a witness answers) added; a witness's
    /// older line is replaced.
    pub fn with_cosignatures(&self, lines: &[u8]) -> Result<SignedCheckpoint, RegistryError> {
        let added = signature_block(lines)?;
        let mut sigs: Vec<(String, u32, Vec<u8>)> = self
            .signatures
            .iter()
            .filter(|(n, i, _)| !added.iter().any(|(an, ai, _)| an == n && ai == i))
            .cloned()
            .collect();
        sigs.extend(added);
        if sigs.len() > MAX_SIGNATURES {
            return Err(RegistryError::Malformed("too many signatures"));
        }
        let mut note = self.text.clone();
        note.push(b'\n');
        for (name, id, sig) in &sigs {
            let mut data = id.to_be_bytes().to_vec();
            data.extend_from_slice(sig);
            note.extend(format!("\u{2014} {name} {}\n", STANDARD.encode(data)).into_bytes());
        }
        Ok(SignedCheckpoint {
            checkpoint: self.checkpoint.clone(),
            note,
            text: self.text.clone(),
            signatures: sigs,
        })
    }
}

/// The signature lines of a note (after its blank line): `(name, key id, signature bytes
/// after the id)`.
fn signature_lines(note: &[u8]) -> Result<Vec<(String, u32, Vec<u8>)>, RegistryError> {
    let text =
        std::str::from_utf8(note).map_err(|_| RegistryError::Malformed("note is not UTF-8"))?;
    let (_, block) = text
        .rsplit_once("\n\n")
        .ok_or(RegistryError::Malformed("note has no signatures"))?;
    signature_block(block.as_bytes())
}

fn signature_block(block: &[u8]) -> Result<Vec<(String, u32, Vec<u8>)>, RegistryError> {
    let m = RegistryError::Malformed;
    let mut out = Vec::new();
    for line in block.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let sig = NoteSignature::from_bytes(line).map_err(|_| m("malformed signature line"))?;
        out.push((sig.name().to_owned(), sig.id(), sig.signature().to_vec()));
        if out.len() > MAX_SIGNATURES {
            return Err(m("too many signatures"));
        }
    }
    Ok(out)
}

/// A witness a node or application trusts: its name and `cosignature/v1` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witness {
    pub name: String,
    pub key: VerifyingKey,
    pub id: u32,
}

impl Witness {
    pub fn new(name: &str, key: VerifyingKey) -> Witness {
        Witness {
            name: name.to_owned(),
            id: key_id(name, ALG_COSIGNATURE_V1, &key),
            key,
        }
    }

    /// Parses a C2SP vkey `<name>+<hex id>+<base64(0x04 || key)>`.
    pub fn parse_vkey(vkey: &str) -> Result<Witness, String> {
        let bad = || format!("{vkey:?} is not a witness key (name+id+base64 of 0x04 and the key)");
        let mut parts = vkey.splitn(3, '+');
        let (name, id, data) = match (parts.next(), parts.next(), parts.next()) {
            (Some(n), Some(i), Some(d)) if !n.is_empty() && signed_note::is_key_name_valid(n) => {
                (n, i, d)
            }
            _ => return Err(bad()),
        };
        let data = STANDARD.decode(data).map_err(|_| bad())?;
        if data.len() != 33 || data[0] != ALG_COSIGNATURE_V1 {
            return Err(bad());
        }
        let key = VerifyingKey::from_bytes(&data[1..].try_into().map_err(|_| bad())?)
            .map_err(|_| bad())?;
        let w = Witness::new(name, key);
        if format!("{:08x}", w.id) != id {
            return Err(format!("{vkey:?}: the key id does not match the key"));
        }
        Ok(w)
    }

    /// This witness's vkey.
    pub fn vkey(&self) -> String {
        vkey(&self.name, ALG_COSIGNATURE_V1, &self.key)
    }

    /// Checks a cosignature (the bytes after the key id: timestamp and signature) on `text`;
    /// returns the cosignature's time.
    pub fn verify(&self, text: &[u8], sig: &[u8]) -> Option<u64> {
        if sig.len() != 72 {
            return None;
        }
        let time = u64::from_be_bytes(sig[..8].try_into().ok()?);
        let s = Signature::from_slice(&sig[8..]).ok()?;
        self.key
            .verify_strict(&cosigned_message(text, time), &s)
            .ok()
            .map(|_| time)
    }
}

/// What a `cosignature/v1` signs: `cosignature/v1\ntime <t>\n` and the checkpoint body.
fn cosigned_message(text: &[u8], time: u64) -> Vec<u8> {
    let mut msg = format!("cosignature/v1\ntime {time}\n").into_bytes();
    msg.extend_from_slice(text);
    msg
}

/// A witness's cosignature line for `text` at `time`.
pub fn cosign(name: &str, key: &SigningKey, text: &[u8], time: u64) -> String {
    let sig = key.sign(&cosigned_message(text, time));
    let mut data = key_id(name, ALG_COSIGNATURE_V1, &key.verifying_key())
        .to_be_bytes()
        .to_vec();
    data.extend_from_slice(&time.to_be_bytes());
    data.extend_from_slice(&sig.to_bytes());
    format!("\u{2014} {name} {}\n", STANDARD.encode(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(key: &SigningKey) -> Checkpoint {
        Checkpoint {
            origin: origin_for(&key.verifying_key()),
            size: 3,
            root: [9; 32],
            map_root: [7; 32],
            time: 77,
        }
    }

    #[test]
    fn checkpoint_signature_is_checked_and_body_round_trips() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let cp = checkpoint(&key);
        let note = cp.sign(&key);
        let signed = SignedCheckpoint::verify(&note, &key.verifying_key()).unwrap();
        assert_eq!(signed.checkpoint, cp);
        let other = SigningKey::from_bytes(&[6; 32]).verifying_key();
        assert_eq!(
            SignedCheckpoint::verify(&note, &other).unwrap_err().code(),
            "registry.untrusted"
        );
        let mut tampered = note.clone();
        tampered[cp.origin.len() + 1] = b'4';
        assert!(SignedCheckpoint::verify(&tampered, &key.verifying_key()).is_err());
    }

    #[test]
    fn the_signed_note_crate_verifies_our_checkpoint_signature() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let note = checkpoint(&key).sign(&key);
        let vkey = registry_vkey(&key.verifying_key());
        let verifier = signed_note::StandardVerifier::new(&vkey).unwrap();
        let list = signed_note::VerifierList::new(vec![Box::new(verifier)]);
        let parsed = Note::from_bytes(&note).unwrap();
        let (verified, _) = parsed.verify(&list).unwrap();
        assert_eq!(verified.len(), 1);
    }

    #[test]
    fn cosignatures_count_only_for_listed_witnesses_with_valid_signatures() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let signed =
            SignedCheckpoint::verify(&checkpoint(&key).sign(&key), &key.verifying_key()).unwrap();
        let w1 = SigningKey::from_bytes(&[1; 32]);
        let w2 = SigningKey::from_bytes(&[2; 32]);
        let list = vec![
            Witness::new("w1.example", w1.verifying_key()),
            Witness::new("w2.example", w2.verifying_key()),
        ];
        assert_eq!(Witness::parse_vkey(&list[0].vkey()).unwrap(), list[0]);
        let one = signed
            .with_cosignatures(cosign("w1.example", &w1, &signed.text, 100).as_bytes())
            .unwrap();
        assert_eq!(one.cosigned_by(&list).len(), 1);
        // A cosignature under the wrong name, or over another body, does not count.
        let wrong = signed
            .with_cosignatures(cosign("w2.example", &w1, &signed.text, 100).as_bytes())
            .unwrap();
        assert_eq!(wrong.cosigned_by(&list).len(), 0);
        let both = one
            .with_cosignatures(cosign("w2.example", &w2, &signed.text, 101).as_bytes())
            .unwrap();
        let reparsed = SignedCheckpoint::verify(&both.note, &key.verifying_key()).unwrap();
        assert_eq!(reparsed.cosigned_by(&list).len(), 2);
    }
}
