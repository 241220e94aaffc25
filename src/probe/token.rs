//! Bearer tokens: fetched from the challenge's realm as containerd's authorizer does, reused
//! until they expire.
//!
//! containerd `authHandler.doBearerAuth`: with a secret (a non-empty password) it first `POST`s
//! the OAuth2 form (`auth.FetchTokenWithOAuth`: `grant_type=password` with the username,
//! `client_id=containerd-client`, `service`, the scopes joined by spaces) and takes only
//! `access_token` from the answer; on 400, 401 or 404 (and 405 when there is a username) it
//! falls back to `GET <realm>?service=…&scope=…` with HTTP Basic (`auth.FetchToken`), which
//! accepts `access_token` or `token`. Without a secret it asks anonymously with `GET` — also
//! when a username is set. `expires_in` defaults to 60 s.
//!
//! The cache key is the realm, service, scopes and a keyed hash of the credential, so a rotated
//! secret never reuses a token fetched with the old one. Tokens are [`Secret`]s and never appear
//! in messages.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
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

/// How a registry host asked to be authenticated the last time, so the next probe can send
/// its first request authorised (one request with a cached token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KnownAuth {
    Basic,
    Bearer(BearerChallenge),
}

/// Tokens and per-host challenges shared by all probes of a prober.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    hasher: std::collections::hash_map::RandomState,
    tokens: Mutex<HashMap<Key, (Secret, Instant)>>,
    hosts: Mutex<HashMap<(String, u64), KnownAuth>>,
}

impl TokenCache {
    /// A keyed hash of the credential (0 for anonymous): the cache never holds the secret.
    pub(crate) fn credential_id(&self, credential: Option<&Credential>) -> u64 {
        let Some(c) = credential else { return 0 };
        self.hasher
            .hash_one((&c.username, c.password.expose()))
            .max(1)
    }

    fn key(
        &self,
        challenge: &BearerChallenge,
        scope: &str,
        credential: Option<&Credential>,
    ) -> Key {
        Key {
            realm: challenge.realm.clone(),
            service: challenge.service.clone().unwrap_or_default(),
            scope: scope.to_owned(),
            credential: self.credential_id(credential),
        }
    }

    /// The scheme `host` asked for last time with this credential.
    pub(crate) fn known(&self, host: &str, credential: Option<&Credential>) -> Option<KnownAuth> {
        let id = self.credential_id(credential);
        self.hosts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(host.to_owned(), id))
            .cloned()
    }

    pub(crate) fn remember(&self, host: &str, credential: Option<&Credential>, auth: KnownAuth) {
        let id = self.credential_id(credential);
        let mut map = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_CACHED {
            map.clear();
        }
        map.insert((host.to_owned(), id), auth);
    }

    pub(crate) fn forget(&self, host: &str, credential: Option<&Credential>) {
        let id = self.credential_id(credential);
        self.hosts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(host.to_owned(), id));
    }

    /// A cached, unexpired token.
    pub(crate) fn cached(
        &self,
        challenge: &BearerChallenge,
        scope: &str,
        credential: Option<&Credential>,
    ) -> Option<Secret> {
        let key = self.key(challenge, scope, credential);
        let map = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&key)
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

    /// Fetches a new token for `scope` (space-separated scopes) from the realm and caches it.
    pub(crate) async fn fetch(
        &self,
        session: &mut Session<'_>,
        challenge: &BearerChallenge,
        scope: &str,
        credential: Option<&Credential>,
        containers_image: bool,
    ) -> Result<Secret, StepError> {
        let key = self.key(challenge, scope, credential);
        let (token, lifetime) = if containers_image {
            // containers/image `getBearerToken`: always GET, with `account` when there is a
            // username (the OAuth2 POST only for identity tokens, which kubelet never passes).
            let url = realm_url(challenge)?;
            get(session, url, challenge, scope, credential, true).await?
        } else {
            fetch(session, challenge, scope, credential).await?
        };
        // Refresh a little early so a token never expires between the check and its use.
        let margin = (lifetime / 10).min(Duration::from_secs(30));
        self.put(key, token.clone(), Instant::now() + lifetime - margin);
        Ok(token)
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

/// containerd `doBearerAuth`: the OAuth2 POST first when there is a secret, else (or on
/// 400/401/404, and 405 with a username) `GET` with Basic.
async fn fetch(
    session: &mut Session<'_>,
    challenge: &BearerChallenge,
    scope: &str,
    credential: Option<&Credential>,
) -> Result<(Secret, Duration), StepError> {
    let url = realm_url(challenge)?;
    let with_secret = credential.filter(|c| !c.password.expose().is_empty());
    if let Some(c) = with_secret {
        match post(session, &url, challenge, scope, c).await? {
            Answer::Token(t) => return Ok(t),
            Answer::Status(s)
                if matches!(s.as_u16(), 400 | 401 | 404)
                    || (s == StatusCode::METHOD_NOT_ALLOWED && !c.username.is_empty()) => {}
            Answer::Status(s) => return Err(refused(&url, s, with_secret, "POST")),
        }
    }
    get(session, url, challenge, scope, with_secret, false).await
}

fn realm_url(challenge: &BearerChallenge) -> Result<Url, StepError> {
    let url = Url::parse(&challenge.realm).map_err(|_| {
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
    Ok(url)
}

enum Answer {
    Token((Secret, Duration)),
    Status(StatusCode),
}

/// containerd `auth.FetchTokenWithOAuth`.
async fn post(
    session: &mut Session<'_>,
    url: &Url,
    challenge: &BearerChallenge,
    scope: &str,
    credential: &Credential,
) -> Result<Answer, StepError> {
    let form = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        if !scope.is_empty() {
            form.append_pair("scope", scope);
        }
        form.append_pair("service", challenge.service.as_deref().unwrap_or_default())
            .append_pair("client_id", "containerd-client");
        if credential.username.is_empty() {
            form.append_pair("grant_type", "refresh_token")
                .append_pair("refresh_token", credential.password.expose());
        } else {
            form.append_pair("grant_type", "password")
                .append_pair("username", &credential.username)
                .append_pair("password", credential.password.expose());
        }
        form.finish()
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
    );
    let shown = redact_url(url);
    let (resp, _) = session
        .fetch(Method::POST, url, headers, Bytes::from(form))
        .await?;
    let status = resp.status();
    let body = read_body(resp, MAX_TOKEN_BODY).await?;
    if !(200..400).contains(&status.as_u16()) {
        return Ok(Answer::Status(status));
    }
    // The OAuth2 answer must carry `access_token` (containerd: ErrNoToken otherwise).
    let parsed = parse_body(&shown, &body)?;
    let token = parsed
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            StepError::new(
                Reason::ProtocolError,
                format!(
                    "the token server {shown} answered the OAuth2 POST without an access_token"
                ),
            )
        })?;
    Ok(Answer::Token(finish(&shown, token, parsed.expires_in)?))
}

/// containerd `auth.FetchToken`: `GET <realm>?service=…&scope=…` (one `scope` per scope), HTTP
/// Basic when there is a secret.
async fn get(
    session: &mut Session<'_>,
    mut url: Url,
    challenge: &BearerChallenge,
    scope: &str,
    credential: Option<&Credential>,
    account: bool,
) -> Result<(Secret, Duration), StepError> {
    {
        let mut q = url.query_pairs_mut();
        if account && let Some(c) = credential.filter(|c| !c.username.is_empty()) {
            q.append_pair("account", &c.username);
        }
        if let Some(s) = challenge.service.as_deref().filter(|s| !s.is_empty()) {
            q.append_pair("service", s);
        }
        for s in scope.split(' ').filter(|s| !s.is_empty()) {
            q.append_pair("scope", s);
        }
    }
    let mut headers = HeaderMap::new();
    if let Some(c) = credential {
        let raw = format!("{}:{}", c.username, c.password.expose());
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
    let shown = redact_url(&url);
    let (resp, _) = session
        .fetch(Method::GET, &url, headers, Bytes::new())
        .await?;
    let status = resp.status();
    let body = read_body(resp, MAX_TOKEN_BODY).await?;
    if !(200..400).contains(&status.as_u16()) {
        return Err(refused(&url, status, credential, "GET"));
    }
    let parsed = parse_body(&shown, &body)?;
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
    finish(&shown, token, parsed.expires_in)
}

/// A token request the server refused, classified.
fn refused(
    url: &Url,
    status: StatusCode,
    credential: Option<&Credential>,
    method: &str,
) -> StepError {
    let shown = redact_url(url);
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => match credential {
            Some(c) => StepError::new(
                Reason::AuthFailed,
                format!(
                    "the token server {shown} rejected {} ({method} answered {status})",
                    c.describe()
                ),
            ),
            None => StepError::new(
                Reason::AuthRequired,
                format!("the token server {shown} refuses anonymous tokens ({status})"),
            ),
        },
        StatusCode::TOO_MANY_REQUESTS => StepError::new(
            Reason::RateLimited,
            format!("the token server {shown} answered 429 Too Many Requests"),
        ),
        s if s.is_server_error() => StepError::new(
            Reason::ServerError,
            format!("the token server {shown} answered {s}"),
        ),
        s => StepError::new(
            Reason::ProtocolError,
            format!("the token server {shown} answered {s} to the token {method}"),
        ),
    }
}

fn parse_body(shown: &str, body: &[u8]) -> Result<TokenResponse, StepError> {
    // serde would also read a struct from a JSON array (`["tok"]` as `token`): only an object
    // is a token response.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(StepError::new(
            Reason::ProtocolError,
            format!("the token server {shown} did not send a token JSON object"),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        StepError::new(
            Reason::ProtocolError,
            format!(
                "the token server {shown} did not send token JSON (line {} column {})",
                e.line(),
                e.column()
            ),
        )
    })
}

fn finish(
    shown: &str,
    token: String,
    expires_in: Option<i64>,
) -> Result<(Secret, Duration), StepError> {
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
    let expires_in = expires_in
        .filter(|s| *s > 0)
        .map_or(DEFAULT_EXPIRES_IN, |s| s.unsigned_abs())
        .clamp(DEFAULT_EXPIRES_IN, 24 * 3600);
    Ok((Secret::new(token), Duration::from_secs(expires_in)))
}
