//! Access tokens and pre-signed URLs, signed with a key that lives as long as the server.
//!
//! The signature is a keyed SipHash (std has no HMAC): only this server can check it, which is all
//! a fake needs. Clients read the token's claims without verifying it (SPEC section 1).

use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

/// The JWT header; `HS256` so that JWT decoders accept the token (its signature is not HMAC).
const JWT_HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// Why a pre-signed URL is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UrlRefusal {
    BadSignature,
    Expired,
}

/// Signs and checks tokens and URLs.
#[derive(Debug)]
pub(super) struct Signer {
    key: RandomState,
}

impl Signer {
    /// A signer with a fresh random key.
    pub(super) fn new() -> Self {
        Self {
            key: RandomState::new(),
        }
    }

    fn mac(&self, data: &[u8]) -> [u8; 32] {
        let mut mac = [0; 32];
        for (lane, chunk) in (0u64..).zip(mac.chunks_mut(8)) {
            let mut hasher = self.key.build_hasher();
            hasher.write_u64(lane);
            hasher.write(data);
            chunk.copy_from_slice(&hasher.finish().to_le_bytes());
        }
        mac
    }

    /// A JWT for `subject` issued at `now`, and its lifetime in whole seconds (at least 1).
    ///
    /// `exp` is rounded up, so the token is valid for at least `lifetime`.
    pub(super) fn token(
        &self,
        subject: &str,
        now: DateTime<Utc>,
        lifetime: Duration,
    ) -> (String, u64) {
        let lifetime = lifetime.max(Duration::from_secs(1));
        let seconds = lifetime.as_secs() + u64::from(lifetime.subsec_nanos() > 0);
        let end = super::world::saturating_add(now, lifetime);
        let claims = serde_json::json!({
            "iss": "dapsync-fake-dap",
            "sub": subject,
            "iat": now.timestamp(),
            "exp": end.timestamp() + i64::from(end.timestamp_subsec_nanos() > 0),
            "jti": uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid().to_string(),
        });
        let unsigned = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(JWT_HEADER),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = URL_SAFE_NO_PAD.encode(self.mac(unsigned.as_bytes()));
        (format!("{unsigned}.{signature}"), seconds)
    }

    /// Checks that this server issued the token and that it has not expired at `now`.
    pub(super) fn check_token(&self, token: &str, now: DateTime<Utc>) -> Result<(), &'static str> {
        let (unsigned, signature) = token.rsplit_once('.').ok_or("the token is not a JWT")?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| "the token is not a JWT")?;
        if signature != self.mac(unsigned.as_bytes()) {
            return Err("the token was not issued by this server");
        }
        let (_, claims) = unsigned.split_once('.').ok_or("the token is not a JWT")?;
        let claims = URL_SAFE_NO_PAD
            .decode(claims)
            .map_err(|_| "the token is not a JWT")?;
        let claims: serde_json::Value =
            serde_json::from_slice(&claims).map_err(|_| "the token is not a JWT")?;
        let expires = claims
            .get("exp")
            .and_then(serde_json::Value::as_i64)
            .ok_or("the token has no expiry")?;
        if now.timestamp() >= expires {
            return Err("the token has expired");
        }
        Ok(())
    }

    /// The signature of a URL for `object_id` that expires at the Unix time `expires`.
    pub(super) fn url_signature(&self, object_id: &str, expires: i64) -> String {
        let mac = self.mac(format!("{expires}\n{object_id}").as_bytes());
        mac.iter().fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
    }

    /// Checks a URL's signature, then its expiry.
    pub(super) fn check_url(
        &self,
        object_id: &str,
        expires: i64,
        signature: &str,
        now: DateTime<Utc>,
    ) -> Result<(), UrlRefusal> {
        if self.url_signature(object_id, expires) != signature {
            return Err(UrlRefusal::BadSignature);
        }
        if now.timestamp() >= expires {
            return Err(UrlRefusal::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_jwts_that_expire_and_cannot_be_forged() {
        let signer = Signer::new();
        let now = DateTime::from_timestamp(1_767_261_600, 500_000_000).unwrap();
        let (token, seconds) = signer.token("client", now, Duration::from_millis(1500));
        assert_eq!(seconds, 2);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            (
                claims["iat"].as_i64(),
                claims["exp"].as_i64(),
                claims["sub"].as_str()
            ),
            (Some(1_767_261_600), Some(1_767_261_602), Some("client"))
        );
        assert_eq!(signer.check_token(&token, now), Ok(()));
        assert_eq!(
            signer.check_token(&token, now + Duration::from_secs(2)),
            Err("the token has expired")
        );
        assert!(Signer::new().check_token(&token, now).is_err());
        assert!(signer.check_token("garbage", now).is_err());
    }

    #[test]
    fn urls_are_refused_when_tampered_with_or_expired() {
        let signer = Signer::new();
        let now = DateTime::from_timestamp(1_000, 0).unwrap();
        let signature = signer.url_signature("job/part-00000.jsonl.gz", 1_100);
        assert_eq!(
            signer.check_url("job/part-00000.jsonl.gz", 1_100, &signature, now),
            Ok(())
        );
        assert_eq!(
            signer.check_url("job/part-00000.jsonl.gz", 2_000, &signature, now),
            Err(UrlRefusal::BadSignature)
        );
        assert_eq!(
            signer.check_url("job/part-00001.jsonl.gz", 1_100, &signature, now),
            Err(UrlRefusal::BadSignature)
        );
        let later = DateTime::from_timestamp(1_100, 0).unwrap();
        assert_eq!(
            signer.check_url("job/part-00000.jsonl.gz", 1_100, &signature, later),
            Err(UrlRefusal::Expired)
        );
    }
}
