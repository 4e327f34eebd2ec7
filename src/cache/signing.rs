//! Signed blob URLs: the toolkit sends no `Authorization` when it downloads an archive (v1 and
//! v2) or uploads one to a v2 upload URL, so those URLs carry their own proof: an HMAC-SHA256 over
//! what they grant (`download` or `upload`, the id) and an expiry, under a key drawn at random when
//! the server opens. A restart therefore invalidates every URL handed out before it, which also
//! keeps an id reused after a restart from being reachable through an old URL.
//!
//! May use: `hmac`, `sha2`, `rand`, `hex`, std.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::error::CacheError;

/// What a signed URL lets its bearer do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// GET (and HEAD) the committed blob of an entry id.
    Download,
    /// PUT the bytes of a v2 upload id.
    Upload,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Download => "download",
            Purpose::Upload => "upload",
        }
    }
}

/// The signing key and the lifetime of the URLs it signs.
pub struct Signer {
    key: [u8; 32],
    ttl: Duration,
}

/// The query parameters of a signed URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlSignature {
    /// Expiry, seconds since the Unix epoch.
    pub expires: u64,
    /// Lower-case hex HMAC.
    pub sig: String,
}

impl UrlSignature {
    /// `exp=...&sig=...`, ready to append to a path.
    pub fn query(&self) -> String {
        format!("exp={}&sig={}", self.expires, self.sig)
    }
}

impl Signer {
    /// A signer with a fresh random key; URLs live for `ttl`.
    pub fn new(ttl: Duration) -> Signer {
        Signer {
            key: rand::random(),
            ttl,
        }
    }

    /// Signs `purpose` on `id`, valid until `ttl` from now.
    pub fn sign(&self, purpose: Purpose, id: u64) -> UrlSignature {
        let expires = now_secs().saturating_add(self.ttl.as_secs());
        UrlSignature {
            expires,
            sig: hex::encode(self.mac(purpose, id, expires).finalize().into_bytes()),
        }
    }

    /// Checks a URL's signature (constant time) and expiry.
    pub fn verify(&self, purpose: Purpose, id: u64, sig: &UrlSignature) -> Result<(), CacheError> {
        let claimed = hex::decode(&sig.sig).map_err(|_| CacheError::BadSignature)?;
        self.mac(purpose, id, sig.expires)
            .verify_slice(&claimed)
            .map_err(|_| CacheError::BadSignature)?;
        if now_secs() >= sig.expires {
            return Err(CacheError::BadSignature);
        }
        Ok(())
    }

    fn mac(&self, purpose: Purpose, id: u64, expires: u64) -> Hmac<Sha256> {
        // The key is 32 bytes; HMAC accepts a key of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(format!("{}\n{id}\n{expires}", purpose.as_str()).as_bytes());
        mac
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Compares two secrets in time that depends only on their lengths' hashes, not their contents:
/// both sides are hashed first, so neither length nor a common prefix leaks.
pub fn secrets_equal(left: &str, right: &str) -> bool {
    use sha2::Digest;
    let left = Sha256::digest(left.as_bytes());
    let right = Sha256::digest(right.as_bytes());
    left.iter()
        .zip(right.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_purpose_id_and_expiry() {
        let signer = Signer::new(Duration::from_secs(60));
        let sig = signer.sign(Purpose::Download, 7);
        assert!(signer.verify(Purpose::Download, 7, &sig).is_ok());
        assert!(signer.verify(Purpose::Upload, 7, &sig).is_err());
        assert!(signer.verify(Purpose::Download, 8, &sig).is_err());
        let stretched = UrlSignature {
            expires: sig.expires + 1000,
            sig: sig.sig.clone(),
        };
        assert!(signer.verify(Purpose::Download, 7, &stretched).is_err());
        let other = Signer::new(Duration::from_secs(60));
        assert!(other.verify(Purpose::Download, 7, &sig).is_err());
    }

    #[test]
    fn a_zero_lifetime_url_is_already_expired() {
        let signer = Signer::new(Duration::ZERO);
        let sig = signer.sign(Purpose::Download, 1);
        assert!(matches!(
            signer.verify(Purpose::Download, 1, &sig),
            Err(CacheError::BadSignature)
        ));
    }

    #[test]
    fn secrets_compare_by_content() {
        assert!(secrets_equal("abc", "abc"));
        assert!(!secrets_equal("abc", "abd"));
        assert!(!secrets_equal("abc", "abcd"));
    }
}
