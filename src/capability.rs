//! Capabilities: what a link or a cookie lets its holder do, signed with
//! HMAC-SHA256 under the server secret the state file keeps, so an ack
//! link works from a phone without the shared API token and cannot be
//! forged or widened to another group.

use crate::model::Timestamp;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

/// How long an ack link stays valid after its message at least (it also
/// stays valid while its group still fires).
pub const ACK_LINK_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The server's signing key: 32 random bytes, generated once and kept in
/// the state file (`StateDb::server_secret`), so links survive restarts.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Secret(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 32 bytes from the kernel's random source.
    pub fn generate() -> std::io::Result<Self> {
        use std::io::Read;
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        Ok(Secret(bytes))
    }

    /// The hex HMAC of `parts` for `purpose`; each part is length-prefixed,
    /// so ("ab", "c") and ("a", "bc") sign differently.
    pub fn sign(&self, purpose: &str, parts: &[&str]) -> String {
        hex(&self.mac(purpose, parts).finalize().into_bytes())
    }

    /// Whether `signature` is [`Secret::sign`] of the same input, compared
    /// in constant time.
    pub fn verify(&self, purpose: &str, parts: &[&str], signature: &str) -> bool {
        let Some(bytes) = unhex(signature) else { return false };
        self.mac(purpose, parts).verify_slice(&bytes).is_ok()
    }

    fn mac(&self, purpose: &str, parts: &[&str]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        for part in std::iter::once(&purpose).chain(parts) {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac
    }

    /// The query of an ack link for `group_id` issued at `at`:
    /// `exp=<ms>&sig=<hex>`.
    pub fn ack_query(&self, group_id: &str, at: Timestamp) -> String {
        let expires = at + ACK_LINK_LIFETIME;
        let exp = expires.as_millis().to_string();
        format!("exp={exp}&sig={}", self.sign("ack", &[group_id, &exp]))
    }

    /// Checks an ack link's capability for `group_id`.
    pub fn check_ack(&self, group_id: &str, exp: &str, sig: &str) -> Result<Timestamp, LinkError> {
        if !self.verify("ack", &[group_id, exp], sig) {
            return Err(LinkError::Forged);
        }
        exp.parse::<i64>().map(Timestamp::from_millis).map_err(|_| LinkError::Forged)
    }
}

/// Why a capability was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this link is not valid for this group (altered or made up)")]
    Forged,
    #[error("this link has expired: its group no longer fires and it is more than 24 h old")]
    Expired,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(byte: u8) -> Secret {
        Secret::from_bytes([byte; 32])
    }

    #[test]
    fn a_signature_checks_only_for_its_input_and_key() {
        let s = secret(7);
        let sig = s.sign("ack", &["g1", "100"]);
        assert!(s.verify("ack", &["g1", "100"], &sig));
        assert!(!s.verify("ack", &["g2", "100"], &sig), "another group");
        assert!(!s.verify("ack", &["g1", "101"], &sig), "another expiry");
        assert!(!s.verify("session", &["g1", "100"], &sig), "another purpose");
        assert!(!s.verify("ack", &["g1", "10", "0"], &sig), "parts are length-prefixed");
        assert!(!secret(8).verify("ack", &["g1", "100"], &sig), "another key");
        assert!(!s.verify("ack", &["g1", "100"], &sig[..62]), "truncated");
        assert!(!s.verify("ack", &["g1", "100"], "zz"), "not hex");
    }

    #[test]
    fn an_ack_query_round_trips_and_expires_a_day_later() {
        let s = secret(1);
        let at = Timestamp::from_millis(1_000);
        let q = s.ack_query("abc", at);
        let (exp, sig) = q.strip_prefix("exp=").and_then(|q| q.split_once("&sig=")).unwrap();
        assert_eq!(s.check_ack("abc", exp, sig), Ok(at + ACK_LINK_LIFETIME));
        assert_eq!(s.check_ack("abd", exp, sig), Err(LinkError::Forged));
        assert_eq!(s.check_ack("abc", "999999999999", sig), Err(LinkError::Forged));
    }

    #[test]
    fn generated_secrets_differ() {
        assert_ne!(Secret::generate().unwrap(), Secret::generate().unwrap());
    }
}
