//! Login and the shared access token.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use reqwest::header::CONTENT_TYPE;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::secret::Secret;

use super::client::Inner;
use super::error::DapError;
use super::http::LOGIN;

/// The longest a token is trusted, whatever it says: bounds wild `exp`/`expires_in` values.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// An access token and when to stop using it.
#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) secret: Secret,
    /// Counts logins, so that callers refused with the same token trigger only one new login.
    pub(super) generation: u64,
    fresh_until: Instant,
}

/// What a login grants.
#[derive(Debug)]
pub(super) struct Grant {
    token: Secret,
    lifetime: Duration,
}

/// The token shared by every clone of a client.
#[derive(Debug, Default)]
pub(super) struct TokenCache {
    // An async (FIFO) mutex held during login: concurrent callers wait for one login to finish
    // instead of each logging in.
    current: Mutex<Option<Token>>,
}

impl TokenCache {
    /// The current token, after logging in with `login` (only polled then) if there is none,
    /// if it has less than `margin` left, or if it is the one the server `refused` (a token
    /// generation).
    pub(super) async fn get(
        &self,
        refused: Option<u64>,
        margin: Duration,
        login: impl Future<Output = Result<Grant, DapError>>,
    ) -> Result<Token, DapError> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref()
            && Some(token.generation) != refused
            && Instant::now() < token.fresh_until
        {
            return Ok(token.clone());
        }
        let grant = login.await?;
        // A token that lives shorter than twice the margin would be renewed on every call.
        let margin = margin.min(grant.lifetime / 2);
        let token = Token {
            secret: grant.token,
            generation: current.as_ref().map_or(1, |t| t.generation + 1),
            fresh_until: Instant::now() + grant.lifetime - margin,
        };
        *current = Some(token.clone());
        Ok(token)
    }
}

/// The login answer; other fields (`scope`, `token_type`) are not needed.
#[derive(Deserialize)]
struct LoginAnswer {
    access_token: Secret,
    expires_in: Option<f64>,
}

impl Inner {
    /// The access token for a `/dap/*` call; `refused` is the generation of a token the server
    /// has just refused, to force a new login.
    pub(super) async fn token(&self, refused: Option<u64>) -> Result<Token, DapError> {
        self.tokens
            .get(refused, self.options.token_refresh_margin, self.login())
            .await
    }

    async fn login(&self) -> Result<Grant, DapError> {
        let url = self.url(&["ids", "auth", "login"]);
        let mut retries = self.retries(LOGIN);
        let body = loop {
            let request = self
                .http
                .post(url.clone())
                .basic_auth(
                    &self.options.client_id,
                    Some(self.options.client_secret.expose()),
                )
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials");
            match self.send(LOGIN, request).await {
                Ok(body) => break body,
                Err(error) => retries.wait_or_give_up(error).await?,
            }
        };
        // serde's message could quote a field of the answer, so it is left out.
        let answer: LoginAnswer = serde_json::from_slice(&body).map_err(|_| DapError::Decode {
            endpoint: LOGIN,
            reason: "the answer has no string `access_token`".to_owned(),
        })?;
        let lifetime = token_lifetime(answer.access_token.expose(), answer.expires_in, Utc::now())
            .ok_or_else(|| DapError::Decode {
                endpoint: LOGIN,
                reason: "the token has no `exp` claim and the answer no `expires_in`".to_owned(),
            })?;
        self.metrics.login();
        info!(client_id = %self.options.client_id, expires_in_secs = lifetime.as_secs(), "logged in to dap");
        Ok(Grant {
            token: answer.access_token,
            lifetime,
        })
    }
}

/// How long a token lives: by the `exp` claim of a JWT, else by the answer's `expires_in`; at
/// most [`MAX_TOKEN_LIFETIME`].
fn token_lifetime(token: &str, expires_in: Option<f64>, now: DateTime<Utc>) -> Option<Duration> {
    claimed_lifetime(token, expires_in, now).map(|lifetime| lifetime.min(MAX_TOKEN_LIFETIME))
}

fn claimed_lifetime(token: &str, expires_in: Option<f64>, now: DateTime<Utc>) -> Option<Duration> {
    // Capped first, so that a wild value is still a usable lifetime.
    let expires_in = expires_in
        .and_then(|s| Duration::try_from_secs_f64(s.min(MAX_TOKEN_LIFETIME.as_secs_f64())).ok());
    let Some(exp) = jwt_expiry(token) else {
        return expires_in;
    };
    match (exp - now).to_std() {
        Ok(lifetime) if !lifetime.is_zero() => Some(lifetime),
        // Expired on arrival: the local clock is probably wrong, so trust the relative lifetime.
        _ => {
            warn!(%exp, "the access token expires before the local time; check the system clock");
            expires_in.or(Some(Duration::ZERO))
        }
    }
}

/// The `exp` claim of a JWT, read without checking the signature.
fn jwt_expiry(token: &str) -> Option<DateTime<Utc>> {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let json = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let exp = serde_json::from_slice::<Value>(&json)
        .ok()?
        .get("exp")?
        .as_f64()?;
    // `as` saturates, so absurd values cannot panic.
    DateTime::from_timestamp(exp.floor() as i64, 0)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use base64::engine::general_purpose::URL_SAFE;

    use super::*;

    fn jwt(payload: &str) -> String {
        format!(
            "eyJhbGciOiJSUzI1NiJ9.{}.c2lnbmF0dXJl",
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn reads_exp_from_a_jwt() {
        let token = jwt(r#"{"sub": "us-east-1#abc", "exp": 1714557600}"#);
        assert_eq!(jwt_expiry(&token), Some(at(1_714_557_600)));
        let lifetime = token_lifetime(&token, Some(60.0), at(1_714_557_600 - 3000));
        assert_eq!(lifetime, Some(Duration::from_secs(3000)));
        // Padded base64url and fractional NumericDates are accepted too.
        let padded = format!("h.{}.s", URL_SAFE.encode(r#"{"exp": 1714557600.5}"#));
        assert_eq!(jwt_expiry(&padded), Some(at(1_714_557_600)));
    }

    #[test]
    fn falls_back_to_expires_in() {
        for token in [
            "opaque-token",
            "a.b",
            "a.!!!.c",
            &jwt(r#"{"sub": "x"}"#),
            &jwt("[1]"),
            "a.b.c.d",
        ] {
            assert_eq!(jwt_expiry(token), None, "{token}");
            assert_eq!(
                token_lifetime(token, Some(3600.0), at(0)),
                Some(Duration::from_secs(3600))
            );
        }
        assert_eq!(token_lifetime("opaque", None, at(0)), None);
        assert_eq!(token_lifetime("opaque", Some(-5.0), at(0)), None);
        assert_eq!(
            token_lifetime("opaque", Some(1e300), at(0)),
            Some(MAX_TOKEN_LIFETIME)
        );
        let far = jwt(r#"{"exp": 1e300}"#);
        assert_eq!(
            token_lifetime(&far, Some(60.0), at(0)),
            Some(Duration::from_secs(60))
        );
        let far = jwt(r#"{"exp": 32503680000}"#);
        assert_eq!(token_lifetime(&far, None, at(0)), Some(MAX_TOKEN_LIFETIME));
    }

    #[test]
    fn a_jwt_expired_by_the_local_clock_uses_expires_in() {
        let token = jwt(r#"{"exp": 1000}"#);
        assert_eq!(
            token_lifetime(&token, Some(3600.0), at(5000)),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(token_lifetime(&token, None, at(5000)), Some(Duration::ZERO));
    }

    fn grant(lifetime_secs: u64) -> Grant {
        Grant {
            token: Secret::new("t"),
            lifetime: Duration::from_secs(lifetime_secs),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_login() {
        let cache = Arc::new(TokenCache::default());
        let logins = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let (cache, logins) = (cache.clone(), logins.clone());
            tasks.push(tokio::spawn(async move {
                let token = cache
                    .get(None, Duration::from_secs(300), async {
                        logins.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        Ok(grant(3600))
                    })
                    .await
                    .unwrap();
                token.generation
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), 1);
        }
        assert_eq!(logins.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn renews_within_the_margin_and_after_a_refusal() {
        let cache = TokenCache::default();
        let logins = AtomicU32::new(0);
        let margin = Duration::from_secs(300);
        let get = async |refused| {
            cache
                .get(refused, margin, async {
                    logins.fetch_add(1, Ordering::SeqCst);
                    Ok(grant(3600))
                })
                .await
                .unwrap()
                .generation
        };
        assert_eq!(get(None).await, 1);
        tokio::time::advance(Duration::from_secs(3299)).await;
        assert_eq!(get(None).await, 1, "still more than the margin left");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(get(None).await, 2, "less than the margin left");
        // Two callers refused with generation 2: only the first logs in again.
        assert_eq!(get(Some(2)).await, 3);
        assert_eq!(get(Some(2)).await, 3);
        assert_eq!(logins.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_lived_token_is_not_renewed_on_every_call() {
        let cache = TokenCache::default();
        let first = cache
            .get(None, Duration::from_secs(300), async { Ok(grant(60)) })
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(29)).await;
        let again = cache
            .get(None, Duration::from_secs(300), async { Ok(grant(60)) })
            .await
            .unwrap();
        assert_eq!(first.generation, again.generation);
    }
}
