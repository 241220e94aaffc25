//! The `auth` and `manifest` phases: the registry API as containerd uses it.
//!
//! `auth`: `GET /v2/`, then per the challenge: nothing (200), HTTP Basic with the configured
//! credentials, or a Bearer token for `repository:<repo>:pull` from the realm.
//! `manifest`: `HEAD /v2/<repo>/manifests/<ref>` with containerd's Accept list, recording
//! `Docker-Content-Digest` and the rate-limit headers. A manifest is never fetched with GET (on
//! Docker Hub a GET counts as a pull). A 404 is explained with `GET /v2/<repo>/tags/list`
//! (not a pull): the repository exists (`manifest_unknown`, with the nearest tags) or not
//! (`name_unknown`).

use base64::Engine as _;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::Deserialize;
use url::Url;

use super::StepError;
use super::challenge::{self, BearerChallenge, Challenge};
use super::http::{Session, read_body};
use super::ratelimit;
use super::report::RateLimit;
use super::token::TokenCache;
use crate::config::Target;
use crate::credentials::{Credential, Secret};
use crate::outcome::Reason;

/// containerd's resolver Accept header: the node gets the digest it would pull.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, */*";

/// Error bodies and tag lists are read up to this size.
const MAX_BODY: usize = 1024 * 1024;
/// How many tags a `manifest_unknown` message suggests.
const SUGGESTED_TAGS: usize = 5;

/// How requests to the registry are authorised after the `auth` phase.
#[derive(Clone, Debug)]
pub(crate) enum Authorization {
    None,
    Basic(Secret),
    Bearer {
        token: Secret,
        challenge: BearerChallenge,
        cached: bool,
    },
}

impl Authorization {
    fn header(&self) -> Option<HeaderValue> {
        let value = match self {
            Authorization::None => return None,
            Authorization::Basic(v) => format!("Basic {}", v.expose()),
            Authorization::Bearer { token, .. } => format!("Bearer {}", token.expose()),
        };
        let mut v = HeaderValue::from_str(&value).ok()?;
        v.set_sensitive(true);
        Some(v)
    }
}

/// What the manifest phase learned, also on failure.
#[derive(Debug, Default)]
pub(crate) struct ManifestOutcome {
    pub digest: Option<String>,
    pub rate_limit: Option<RateLimit>,
}

/// The repository-scoped pull scope (the resource name may contain a `host:port`).
fn pull_scope(target: &Target) -> String {
    format!("repository:{}:pull", target.image.repository())
}

/// The first entry kubelet would try (kubelet tries each in turn). One containerd would send
/// as no credentials (an empty username) counts as none.
fn credential(target: &Target) -> Option<&Credential> {
    target
        .credentials
        .as_ref()
        .and_then(|c| {
            c.keyring
                .lookup_all(&target.image)
                .first()
                .map(|m| m.credential)
        })
        .filter(|c| !c.is_anonymous())
}

/// A status the auth or manifest phase does not expect, classified.
fn unexpected(what: &str, status: StatusCode) -> StepError {
    let reason = match status {
        StatusCode::TOO_MANY_REQUESTS => Reason::RateLimited,
        s if s.is_server_error() => Reason::ServerError,
        _ => Reason::ProtocolError,
    };
    StepError::new(reason, format!("{what} answered {status}"))
}

/// The `auth` phase.
pub(crate) async fn authenticate(
    session: &mut Session<'_>,
    base: &Url,
    target: &Target,
    tokens: &TokenCache,
) -> Result<Authorization, StepError> {
    let v2 = base.join("/v2/").expect("static path");
    let (resp, _) = session
        .fetch(Method::GET, &v2, HeaderMap::new(), Bytes::new())
        .await?;
    let status = resp.status();
    let challenge_header = resp.headers().get(WWW_AUTHENTICATE).cloned();
    let _ = read_body(resp, MAX_BODY).await;
    let authority = target.image.api_authority();
    if status.is_success() {
        return Ok(Authorization::None);
    }
    if status == StatusCode::NOT_FOUND {
        return Err(StepError::new(
            Reason::ProtocolError,
            format!(
                "GET https://{authority}/v2/ answered 404: this host does not serve the registry API (wrong host, or a path-based proxy)"
            ),
        ));
    }
    if status != StatusCode::UNAUTHORIZED {
        return Err(unexpected(&format!("GET /v2/ on {authority}"), status));
    }
    let header = challenge_header.as_ref().ok_or_else(|| {
        StepError::new(
            Reason::ProtocolError,
            format!("{authority} answered 401 without a WWW-Authenticate challenge"),
        )
    })?;
    let text = header.to_str().map_err(|_| {
        StepError::new(
            Reason::ProtocolError,
            format!("{authority} sent a WWW-Authenticate header that is not text"),
        )
    })?;
    let parsed = challenge::parse(text).map_err(|e| {
        StepError::new(
            Reason::ProtocolError,
            format!("{authority} sent an unusable WWW-Authenticate challenge: {e}"),
        )
    })?;
    let cred = credential(target);
    match parsed {
        Challenge::Basic { .. } => basic(session, &v2, &authority, cred).await,
        Challenge::Bearer(ch) => {
            let (token, cached) = tokens
                .token(session, &ch, &pull_scope(target), cred)
                .await?;
            Ok(Authorization::Bearer {
                token,
                challenge: ch,
                cached,
            })
        }
    }
}

/// Basic auth: check the credentials against `/v2/` so a wrong password fails in `auth`.
async fn basic(
    session: &mut Session<'_>,
    v2: &Url,
    authority: &str,
    cred: Option<&Credential>,
) -> Result<Authorization, StepError> {
    let Some(cred) = cred else {
        return Err(StepError::new(
            Reason::AuthRequired,
            format!(
                "{authority} requires HTTP Basic credentials and none are configured for this image"
            ),
        ));
    };
    let Credential { username, password } = cred;
    let encoded = Secret::new(
        base64::engine::general_purpose::STANDARD
            .encode(format!("{username}:{}", password.expose())),
    );
    let auth = Authorization::Basic(encoded);
    let mut headers = HeaderMap::new();
    if let Some(v) = auth.header() {
        headers.insert(AUTHORIZATION, v);
    }
    let (resp, _) = session
        .fetch(Method::GET, v2, headers, Bytes::new())
        .await?;
    let status = resp.status();
    let _ = read_body(resp, MAX_BODY).await;
    match status {
        s if s.is_success() => Ok(auth),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(StepError::new(
            Reason::AuthFailed,
            format!("{authority} rejected {} ({status})", cred.describe()),
        )),
        s => Err(unexpected(
            &format!("GET /v2/ with credentials on {authority}"),
            s,
        )),
    }
}

/// The `manifest` phase. Retries once with a fresh token when a cached one is refused.
pub(crate) async fn head_manifest(
    session: &mut Session<'_>,
    base: &Url,
    target: &Target,
    auth: Authorization,
    tokens: &TokenCache,
    out: &mut ManifestOutcome,
) -> Result<(), StepError> {
    let repo = target.image.repository();
    let reference = target.image.manifest_reference();
    let url = base
        .join(&format!("/v2/{repo}/manifests/{reference}"))
        .map_err(|_| StepError::new(Reason::ProtocolError, "cannot build the manifest URL"))?;
    let mut auth = auth;
    let resp = loop {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        if let Some(v) = auth.header() {
            headers.insert(AUTHORIZATION, v);
        }
        let (resp, _) = session
            .fetch(Method::HEAD, &url, headers, Bytes::new())
            .await?;
        if let Some(rl) = ratelimit::from_headers(resp.headers()) {
            out.rate_limit = Some(rl);
        }
        match (&auth, resp.status()) {
            (
                Authorization::Bearer {
                    challenge,
                    cached: true,
                    ..
                },
                StatusCode::UNAUTHORIZED,
            ) => {
                let cred = credential(target);
                tokens.invalidate(challenge, &pull_scope(target), cred);
                let (token, _) = tokens
                    .token(session, challenge, &pull_scope(target), cred)
                    .await?;
                auth = Authorization::Bearer {
                    token,
                    challenge: challenge.clone(),
                    cached: false,
                };
            }
            _ => break resp,
        }
    };
    let status = resp.status();
    if status.is_success() {
        out.digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .filter(|d| is_digest(d))
            .map(str::to_owned);
        return Ok(());
    }
    let shown = format!("{}/{repo}", target.image.registry());
    match status {
        StatusCode::NOT_FOUND => Err(explain_not_found(session, base, target, &auth, &shown).await),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            Err(denied(resp.headers(), target, &auth, &shown, status))
        }
        StatusCode::TOO_MANY_REQUESTS => {
            let quota = match &out.rate_limit {
                Some(rl) => format!(
                    " (remaining {} of {}{}{})",
                    rl.remaining,
                    rl.limit,
                    rl.window_seconds
                        .map(|w| format!(
                            " per {}",
                            humantime::format_duration(std::time::Duration::from_secs(w))
                        ))
                        .unwrap_or_default(),
                    rl.source
                        .as_deref()
                        .map(|s| format!(", counted against {s}"))
                        .unwrap_or_default()
                ),
                None => String::new(),
            };
            Err(StepError::new(
                Reason::RateLimited,
                format!(
                    "HEAD manifest of {shown}:{reference} answered 429 Too Many Requests{quota}"
                ),
            ))
        }
        s => Err(unexpected(
            &format!("HEAD manifest of {shown}:{reference}"),
            s,
        )),
    }
}

fn is_digest(d: &str) -> bool {
    d.split_once(':').is_some_and(|(alg, hex)| {
        !alg.is_empty()
            && alg.len() <= 16
            && !hex.is_empty()
            && hex.len() <= 128
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// 401/403 on the manifest after the auth phase: missing access, or Hub's ambiguous answer.
fn denied(
    headers: &HeaderMap,
    target: &Target,
    auth: &Authorization,
    shown: &str,
    status: StatusCode,
) -> StepError {
    let insufficient_scope = headers
        .get(WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| challenge::parse(v).ok())
        .is_some_and(|c| matches!(c, Challenge::Bearer(b) if b.error.as_deref() == Some("insufficient_scope")));
    let cred = credential(target);
    if target.image.is_docker_hub() && status == StatusCode::UNAUTHORIZED && insufficient_scope {
        let who = cred.map_or_else(|| "anonymous pulls".to_owned(), |c| c.describe());
        return StepError::new(
            Reason::AuthRequired,
            format!(
                "Docker Hub answered 401 insufficient_scope for {shown} with {who}: the repository does not exist, \
                 or it is private and these credentials may not pull it — Docker Hub answers both the same way and does not reveal which"
            ),
        );
    }
    match (cred, auth) {
        (None, _) | (_, Authorization::None) => StepError::new(
            Reason::AuthRequired,
            format!(
                "{shown} needs credentials to pull ({status}) and none are configured for this image"
            ),
        ),
        (Some(c), _) => StepError::new(
            Reason::AuthFailed,
            format!(
                "{shown}: the registry does not let {} pull this repository ({status})",
                c.describe()
            ),
        ),
    }
}

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
}

/// A 404 on the manifest: ask the tag list (not a pull) whether the repository exists.
async fn explain_not_found(
    session: &mut Session<'_>,
    base: &Url,
    target: &Target,
    auth: &Authorization,
    shown: &str,
) -> StepError {
    let reference = target.image.manifest_reference();
    let what = if target.image.digest().is_some() {
        "digest"
    } else {
        "tag"
    };
    let missing_manifest = |detail: String| {
        StepError::new(
            Reason::ManifestUnknown,
            format!(
                "{what} `{reference}` not found in {shown}; {detail} — check the {what} in the pod spec"
            ),
        )
    };
    let Ok(url) = base.join(&format!("/v2/{}/tags/list", target.image.repository())) else {
        return missing_manifest(
            "the registry did not say whether the repository exists".to_owned(),
        );
    };
    let mut headers = HeaderMap::new();
    if let Some(v) = auth.header() {
        headers.insert(AUTHORIZATION, v);
    }
    let Ok((resp, _)) = session
        .fetch(Method::GET, &url, headers, Bytes::new())
        .await
    else {
        return missing_manifest(
            "the registry did not say whether the repository exists".to_owned(),
        );
    };
    let status = resp.status();
    let body = read_body(resp, MAX_BODY).await;
    match (status, body) {
        (s, Ok(body)) if s.is_success() => {
            let tags = serde_json::from_slice::<TagList>(&body)
                .ok()
                .and_then(|t| t.tags)
                .unwrap_or_default();
            if tags.is_empty() {
                missing_manifest("the repository exists but has no tags".to_owned())
            } else {
                missing_manifest(format!(
                    "the repository exists and has tags {}",
                    nearest_tags(reference, &tags, SUGGESTED_TAGS).join(", ")
                ))
            }
        }
        (StatusCode::NOT_FOUND, body) => {
            let code = body
                .ok()
                .and_then(|b| serde_json::from_slice::<ErrorBody>(&b).ok())
                .and_then(|e| e.errors.into_iter().next())
                .map(|e| e.code);
            match code.as_deref() {
                None | Some("NAME_UNKNOWN") => StepError::new(
                    Reason::NameUnknown,
                    format!(
                        "repository {shown} not found on {}",
                        target.image.api_authority()
                    ),
                ),
                Some(_) => missing_manifest(
                    "the registry did not say whether the repository exists".to_owned(),
                ),
            }
        }
        _ => missing_manifest("the registry did not say whether the repository exists".to_owned()),
    }
}

/// The tags closest to `wanted` by edit distance (ties by name), at most `n`.
pub(crate) fn nearest_tags(wanted: &str, tags: &[String], n: usize) -> Vec<String> {
    let w: Vec<char> = wanted.chars().collect();
    let mut scored: Vec<(usize, &String)> = tags
        .iter()
        .take(50_000)
        .map(|t| (levenshtein(&w, t), t))
        .collect();
    scored.sort();
    scored.into_iter().take(n).map(|(_, t)| t.clone()).collect()
}

fn levenshtein(a: &[char], b: &str) -> usize {
    let b: Vec<char> = b.chars().take(256).collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_tags_prefers_close_names() {
        let tags: Vec<String> = [
            "1.27",
            "1.27.3",
            "latest",
            "alpine",
            "1.26-alpine",
            "mainline",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(nearest_tags("1.27.4", &tags, 2), ["1.27.3", "1.27"]);
        assert_eq!(nearest_tags("lastest", &tags, 1), ["latest"]);
        assert!(nearest_tags("x", &[], 3).is_empty());
    }

    fn target(image: &str) -> Target {
        let yaml = format!("targets:\n  - image: {image}\n");
        crate::config::Config::from_yaml("t.yaml", &yaml, std::path::Path::new("/"))
            .unwrap()
            .targets
            .remove(0)
    }

    #[test]
    fn docker_hub_insufficient_scope_is_reported_as_ambiguous() {
        let mut h = HeaderMap::new();
        h.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:someone/private:pull",error="insufficient_scope""#,
            ),
        );
        let hub = target("someone/private");
        let e = denied(
            &h,
            &hub,
            &Authorization::None,
            "docker.io/someone/private",
            StatusCode::UNAUTHORIZED,
        );
        assert_eq!(e.reason, Reason::AuthRequired);
        assert!(
            e.message.contains("does not exist, or it is private"),
            "{}",
            e.message
        );
        assert!(e.message.contains("does not reveal which"), "{}", e.message);

        // Elsewhere, the same answer without credentials is a plain auth_required.
        let other = target("ghcr.io/org/private");
        let e = denied(
            &h,
            &other,
            &Authorization::None,
            "ghcr.io/org/private",
            StatusCode::UNAUTHORIZED,
        );
        assert_eq!(e.reason, Reason::AuthRequired);
        assert!(!e.message.contains("Docker Hub"), "{}", e.message);
        // A 403 on Docker Hub is not the ambiguous case.
        let e = denied(
            &HeaderMap::new(),
            &hub,
            &Authorization::None,
            "docker.io/someone/private",
            StatusCode::FORBIDDEN,
        );
        assert!(!e.message.contains("does not reveal"), "{}", e.message);
    }

    #[test]
    fn digests_are_validated_before_reporting() {
        assert!(is_digest(&format!("sha256:{}", "ab".repeat(32))));
        assert!(!is_digest("sha256:"));
        assert!(!is_digest("sha256:<script>"));
        assert!(!is_digest("nodigest"));
    }
}
