//! Webhook signing secrets encrypted at rest.
//!
//! The secrets that sign webhooks (each endpoint's, and each tenant's
//! callback secret) must be readable by the dispatcher, so they cannot be
//! hashed like API keys. They are sealed with AES-256-GCM under a key from
//! the environment (`SECRETS_KEYS`), so a database dump, a replica or a
//! backup does not hand out the means to forge webhooks.
//!
//! Stored form: `sealed:v1:<key id>:<base64(nonce ‖ ciphertext ‖ tag)>`, a
//! fresh 96-bit random nonce per seal. The row the secret belongs to
//! (`webhook_endpoints/<id>`, `tenants/<id>`) is the associated data, so a
//! sealed value copied into another tenant's row does not open there.
//!
//! Rotation: put a new key first in `SECRETS_KEYS` (the first key seals,
//! every listed key opens), roll the replicas, run `dispatcher secrets
//! rewrap` (re-seals every row under the first key), then drop the old key.
//! Values stored before a key was configured are plain `whsec_…` text; they
//! keep working and `rewrap` seals them.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use rand::RngCore;
use uuid::Uuid;

const SEALED_PREFIX: &str = "sealed:v1:";
const NONCE_LEN: usize = 12;
const KEY_LEN: usize = 32;

/// The row a secret belongs to: bound into its seal as associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretOwner {
    /// `webhook_endpoints.secret` and `.previous_secret` (the two trade
    /// places on rotation, so both are bound to the endpoint, not the column).
    Endpoint(Uuid),
    /// `tenants.callback_secret`.
    Tenant(Uuid),
}

impl SecretOwner {
    fn associated_data(self) -> String {
        match self {
            SecretOwner::Endpoint(id) => format!("webhook_endpoints/{id}"),
            SecretOwner::Tenant(id) => format!("tenants/{id}"),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("SECRETS_KEYS: {0}")]
    BadKeys(String),
    #[error("a secret is sealed with key `{0}`, which SECRETS_KEYS does not list")]
    UnknownKey(String),
    #[error("a sealed secret is stored but SECRETS_KEYS is not set")]
    NoKeys,
    #[error("a sealed secret does not open (damaged, or moved from another row)")]
    Damaged,
}

/// The keys from `SECRETS_KEYS`: `id:base64key,…`, 32-byte keys; the first
/// seals, all open. Its `Debug` shows key ids only.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<(String, Aes256Gcm)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("key_ids", &self.key_ids())
            .finish()
    }
}

impl std::str::FromStr for Keyring {
    type Err = SealError;

    fn from_str(spec: &str) -> Result<Self, SealError> {
        let bad = |why: String| SealError::BadKeys(why);
        let mut keys: Vec<(String, Aes256Gcm)> = Vec::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (id, key) = entry
                .split_once(':')
                .ok_or_else(|| bad("each key is `id:base64key`".into()))?;
            if id.is_empty()
                || id.len() > 32
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(bad(
                    "a key id is 1-32 characters of letters, digits, `-` and `_`".into(),
                ));
            }
            if keys.iter().any(|(seen, _)| seen == id) {
                return Err(bad(format!("key id `{id}` is listed twice")));
            }
            // The error names the id, never the key material.
            let bytes = BASE64
                .decode(key)
                .map_err(|_| bad(format!("key `{id}` is not base64")))?;
            if bytes.len() != KEY_LEN {
                return Err(bad(format!(
                    "key `{id}` is {} bytes; AES-256 needs {KEY_LEN}",
                    bytes.len()
                )));
            }
            let cipher = Aes256Gcm::new_from_slice(&bytes).expect("length checked");
            keys.push((id.to_string(), cipher));
        }
        if keys.is_empty() {
            return Err(bad("no key given".into()));
        }
        Ok(Keyring { keys })
    }
}

impl Keyring {
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.iter().map(|(id, _)| id.as_str()).collect()
    }

    /// The id of the key that seals.
    pub fn primary(&self) -> &str {
        &self.keys[0].0
    }

    /// A new `id:base64key` entry for `SECRETS_KEYS`, from the OS's CSPRNG.
    pub fn new_entry(id: &str) -> String {
        let mut key = [0u8; KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut key);
        format!("{id}:{}", BASE64.encode(key))
    }

    fn seal(&self, owner: SecretOwner, plaintext: &str) -> String {
        let (id, cipher) = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = owner.associated_data();
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM encrypts any message under 64 GiB");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        format!("{SEALED_PREFIX}{id}:{}", BASE64.encode(blob))
    }

    fn open(&self, owner: SecretOwner, key_id: &str, blob: &str) -> Result<String, SealError> {
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(id, _)| id == key_id)
            .ok_or_else(|| SealError::UnknownKey(key_id.to_string()))?;
        let blob = BASE64.decode(blob).map_err(|_| SealError::Damaged)?;
        if blob.len() < NONCE_LEN {
            return Err(SealError::Damaged);
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let aad = owner.associated_data();
        let plain = cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SealError::Damaged)?;
        String::from_utf8(plain).map_err(|_| SealError::Damaged)
    }
}

/// How this process stores secrets: sealed under a keyring, or (no
/// `SECRETS_KEYS`, which the dispatcher warns about at start) as plain text.
#[derive(Clone, Debug, Default)]
pub struct Sealer {
    keyring: Option<Keyring>,
}

impl Sealer {
    pub fn new(keyring: Option<Keyring>) -> Self {
        Sealer { keyring }
    }

    pub fn keyring(&self) -> Option<&Keyring> {
        self.keyring.as_ref()
    }

    /// The form to store `plaintext` in.
    pub fn seal(&self, owner: SecretOwner, plaintext: &str) -> String {
        match &self.keyring {
            Some(keyring) => keyring.seal(owner, plaintext),
            None => plaintext.to_string(),
        }
    }

    /// The secret in a stored value (sealed, or plain from before a key was set).
    pub fn open(&self, owner: SecretOwner, stored: &str) -> Result<String, SealError> {
        let Some(rest) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok(stored.to_string());
        };
        let (key_id, blob) = rest.split_once(':').ok_or(SealError::Damaged)?;
        self.keyring
            .as_ref()
            .ok_or(SealError::NoKeys)?
            .open(owner, key_id, blob)
    }

    /// Whether a stored value should be sealed again: plain, or sealed
    /// under a key other than the primary.
    pub fn needs_rewrap(&self, stored: &str) -> bool {
        let Some(keyring) = &self.keyring else {
            return false;
        };
        match stored.strip_prefix(SEALED_PREFIX) {
            None => true,
            Some(rest) => rest.split_once(':').map(|(id, _)| id) != Some(keyring.primary()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(ids: &[&str]) -> Keyring {
        ids.iter()
            .map(|id| Keyring::new_entry(id))
            .collect::<Vec<_>>()
            .join(",")
            .parse()
            .unwrap()
    }

    #[test]
    fn a_sealed_secret_opens_for_its_row_only_and_hides_the_plaintext() {
        let sealer = Sealer::new(Some(keyring(&["k1"])));
        let (row, other) = (
            SecretOwner::Endpoint(Uuid::now_v7()),
            SecretOwner::Endpoint(Uuid::now_v7()),
        );
        let stored = sealer.seal(row, "whsec_c2VjcmV0");
        assert!(stored.starts_with("sealed:v1:k1:"), "{stored}");
        assert!(!stored.contains("c2VjcmV0"));
        assert_ne!(
            stored,
            sealer.seal(row, "whsec_c2VjcmV0"),
            "fresh nonce per seal"
        );
        assert_eq!(sealer.open(row, &stored).unwrap(), "whsec_c2VjcmV0");
        assert_eq!(sealer.open(other, &stored), Err(SealError::Damaged));
        assert_eq!(
            sealer.open(SecretOwner::Tenant(Uuid::nil()), &stored),
            Err(SealError::Damaged)
        );
        let mut tampered = stored.clone();
        tampered.replace_range(tampered.len() - 3..tampered.len() - 2, "A");
        if tampered != stored {
            assert_eq!(sealer.open(row, &tampered), Err(SealError::Damaged));
        }
    }

    #[test]
    fn rotation_seals_with_the_first_key_and_opens_with_any_listed() {
        let old_entry = Keyring::new_entry("k1");
        let row = SecretOwner::Tenant(Uuid::now_v7());
        let before = Sealer::new(Some(old_entry.parse().unwrap()));
        let stored = before.seal(row, "whsec_x");

        let both = Sealer::new(Some(
            format!("{},{old_entry}", Keyring::new_entry("k2"))
                .parse()
                .unwrap(),
        ));
        assert_eq!(both.open(row, &stored).unwrap(), "whsec_x");
        assert!(both.needs_rewrap(&stored));
        let rewrapped = both.seal(row, &both.open(row, &stored).unwrap());
        assert!(rewrapped.starts_with("sealed:v1:k2:"));
        assert!(!both.needs_rewrap(&rewrapped));

        let new_only = Sealer::new(Some(keyring(&["k2"])));
        assert_eq!(
            new_only.open(row, &stored),
            Err(SealError::UnknownKey("k1".into()))
        );
        assert_eq!(Sealer::default().open(row, &stored), Err(SealError::NoKeys));
    }

    #[test]
    fn plain_values_from_before_a_key_was_set_open_and_need_sealing() {
        let row = SecretOwner::Endpoint(Uuid::now_v7());
        let sealer = Sealer::new(Some(keyring(&["k1"])));
        assert_eq!(sealer.open(row, "whsec_plain").unwrap(), "whsec_plain");
        assert!(sealer.needs_rewrap("whsec_plain"));
        assert!(!Sealer::default().needs_rewrap("whsec_plain"));
        assert_eq!(Sealer::default().seal(row, "whsec_plain"), "whsec_plain");
    }

    #[test]
    fn bad_key_lists_are_refused_without_echoing_key_material() {
        let short = format!("k1:{}", BASE64.encode([7u8; 16]));
        for (spec, says) in [
            ("", "no key"),
            ("k1", "id:base64key"),
            ("k 1:AAAA", "key id"),
            ("k1:not-base64!!", "not base64"),
            (short.as_str(), "16 bytes"),
        ] {
            let err = spec.parse::<Keyring>().unwrap_err().to_string();
            assert!(err.contains(says), "{spec}: {err}");
            assert!(!err.contains("AAAA") && !err.contains("BwcH"), "{err}");
        }
        let twice = format!("{},{}", Keyring::new_entry("a"), Keyring::new_entry("a"));
        assert!(twice
            .parse::<Keyring>()
            .unwrap_err()
            .to_string()
            .contains("twice"));
        let ring = keyring(&["a", "b"]);
        let shown = format!("{ring:?}");
        assert_eq!(shown, r#"Keyring { key_ids: ["a", "b"] }"#);
    }
}
