//! Bearer tokens: fetched from the challenge's realm, reused until they expire.
//!
//! Request (distribution token spec): `GET <realm>?service=<service>&scope=<scope>`, with HTTP
//! Basic credentials when configured (kubelet only ever passes a username and password, so
//! there is no identity token to exchange). The answer carries `token` and/or `access_token`,
//! `expires_in` (default 60 s) and `issued_at`.
//!
//! The cache key includes a keyed hash of the credential, so a rotated secret never reuses a
//! token fetched with the old one. Tokens are [`Secret`]s and never appear in messages.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::Deserialize;
use tokio::time::Instant;
use url::Url;

use super::StepError;
use super::challenge::BearerChallenge;
use super::http::{Session, read_body, redact_url};
use crate::credentials::{Credential, Secret};
use crate::outcome::Reason;

/// Token responses larger than this are refused (real ones are a few KiB).
pub const MAX_TOKEN_BODY: usize = 256 * 1024;
const DEFAULT_EXPIRES_IN: u64 = 60;
const MAX_CACHED: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    realm: String,
    service: String,
    scope: String,
    credential: u64,
}

/// Tokens shared by all probes of a prober.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    hasher: std::collections::hash_map::RandomState,
    tokens: Mutex<HashMap<Key, (Secret, Instant)>>,
}

impl TokenCache {
    fn key(
        &self,
        challenge: &BearerChallenge,
        scope: &str,
        credential: Option<&Credential>,
    ) -> Key {
        let mut h = self.hasher.build_hasher();
        match credential {
            None => 0u8.hash(&mut h),
            Some(Credential { username, password }) => {
                (1u8, username, password.expose()).hash(&mut h)
            }
        }
        Key {
            realm: challenge.realm.clone(),
            service: challenge.service.clone().unwrap_or_default(),
            scope: scope.to_owned(),
            credential: h.finish(),
        }
    }

    fn get(&self, key: &Key) -> Option<Secret> {
        let map = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .filter(|(_, exp)| *exp > Instant::now())
            .map(|(t, _)| t.clone())
    }

    fn put(&self, key: Key, token: Secret, expires: Instant) {
        let mut map = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_CACHED {
            let now = Instant::now();
            map.retain(|_, (_, exp)| *exp > now);
            if map.len() >= MAX_CACHED {
                map.clear();
            }
        }
        map.insert(key, (token, expires));
    }

    /// Forgets a token the registry refused.
    pub(crate) fn invalidate(
        &self,
        challenge: &BearerChallenge,
        scope: &str,
        credential: Option<&Credential>,
    ) {
        let key = self.key(challenge, scope, credential);
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    }

    /// A token for `scope`: cached, or fetched from the realm. The bool says whether it came
    /// from the cache.
    pub(crate) async fn token(
        &self,
        session: &mut Session<'_>,
        challenge: &BearerChallenge,
        scope: &str,
        credential: Option<&Credential>,
    ) -> Result<(Secret, bool), StepError> {
        let key = self.key(challenge, scope, credential);
        if let Some(t) = self.get(&key) {
            return Ok((t, true));
        }
        let (token, lifetime) = fetch(session, challenge, scope, credential).await?;
        // Refresh a little early so a token never expires between the check and its use.
        let margin = (lifetime / 10).min(Duration::from_secs(30));
        self.put(key, token.clone(), Instant::now() + lifetime - margin);
        Ok((token, false))
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<i64>,
}

async fn fetch(
    session: &mut Session<'_>,
    challenge: &BearerChallenge,
    scope: &str,
    credential: Option<&Credential>,
) -> Result<(Secret, Duration), StepError> {
    let mut url = Url::parse(&challenge.realm).map_err(|_| {
        StepError::new(
            Reason::ProtocolError,
            "the Bearer challenge's realm is not a valid URL",
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(StepError::new(
            Reason::ProtocolError,
            "the Bearer challenge's realm is not an http(s) URL",
        ));
    }
    let mut headers = HeaderMap::new();
    {
        let mut q = url.query_pairs_mut();
        if let Some(s) = &challenge.service {
            q.append_pair("service", s);
        }
        q.append_pair("scope", scope);
    }
    if let Some(Credential { username, password }) = credential {
        let raw = format!("{username}:{}", password.expose());
        let value = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        );
        let mut v = HeaderValue::from_str(&value).map_err(|_| {
            StepError::new(
                Reason::AuthFailed,
                "the configured credentials contain characters that cannot be sent in a header",
            )
        })?;
        v.set_sensitive(true);
        headers.insert(AUTHORIZATION, v);
    }
    let (method, body) = (Method::GET, Bytes::new());
    let shown = redact_url(&url);
    let (resp, _) = session.fetch(method, &url, headers, body).await?;
    let status = resp.status();
    let body = read_body(resp, MAX_TOKEN_BODY).await?;
    match status {
        s if s.is_success() => {}
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            return Err(match credential {
                Some(c) => StepError::new(
                    Reason::AuthFailed,
                    format!(
                        "the token server {shown} rejected {} ({status})",
                        c.describe()
                    ),
                ),
                None => StepError::new(
                    Reason::AuthRequired,
                    format!("the token server {shown} refuses anonymous tokens ({status})"),
                ),
            });
        }
        StatusCode::TOO_MANY_REQUESTS => {
            return Err(StepError::new(
                Reason::RateLimited,
                format!("the token server {shown} answered 429 Too Many Requests"),
            ));
        }
        s if s.is_server_error() => {
            return Err(StepError::new(
                Reason::ServerError,
                format!("the token server {shown} answered {s}"),
            ));
        }
        s => {
            return Err(StepError::new(
                Reason::ProtocolError,
                format!("the token server {shown} answered {s}"),
            ));
        }
    }
    // serde would also read a struct from a JSON array (`["tok"]` as `token`): only an object
    // is a token response.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(StepError::new(
            Reason::ProtocolError,
            format!("the token server {shown} did not send a token JSON object"),
        ));
    }
    let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
        StepError::new(
            Reason::ProtocolError,
            format!(
                "the token server {shown} did not send token JSON (line {} column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    // containerd: a non-empty access_token wins over token.
    let token = parsed
        .access_token
        .filter(|t| !t.is_empty())
        .or(parsed.token.filter(|t| !t.is_empty()))
        .ok_or_else(|| {
            StepError::new(
                Reason::ProtocolError,
                format!("the token server {shown} answered without a token"),
            )
        })?;
    // The token becomes an `Authorization` header; one that cannot (control characters, e.g. a
    // CR LF from a JSON escape) would otherwise be dropped silently and the manifest request
    // sent without it, blaming missing credentials for the token server's answer.
    if HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
        return Err(StepError::new(
            Reason::ProtocolError,
            format!(
                "the token server {shown} sent a token with characters that cannot be sent in a header"
            ),
        ));
    }
    let expires_in = parsed
        .expires_in
        .filter(|s| *s > 0)
        .map_or(DEFAULT_EXPIRES_IN, |s| s.unsigned_abs())
        .clamp(DEFAULT_EXPIRES_IN, 24 * 3600);
    Ok((Secret::new(token), Duration::from_secs(expires_in)))
}
