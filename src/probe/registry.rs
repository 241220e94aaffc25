//! The `auth` and `manifest` phases: resolving the reference as containerd's resolver does.
//!
//! Mirrors containerd (1.6/1.7 `remotes/docker`, 2.x `core/remotes/docker`):
//! - `dockerResolver.Resolve`: no `/v2/` ping; `HEAD /v2/<repo>/manifests/<ref>` with the
//!   resolver's Accept list straight away. For a digest reference a 404 is retried as
//!   `HEAD /v2/<repo>/blobs/<digest>`. A 2xx without `Docker-Content-Digest` or
//!   `Content-Length` is followed by a `GET` of the manifest, whose digest is computed —
//!   never on Docker Hub, where a GET counts as a pull.
//! - `request.doWithRetries` / `retryRequest`: a 401 goes to the authorizer and the request is
//!   retried; a 405 on a manifest `HEAD` is retried as `GET` (not on Docker Hub: reported
//!   instead); a 408 is retried at once; at most five responses per request.
//! - `dockerAuthorizer.AddResponses`: keyed by the host of the response's request (after
//!   redirects), every `WWW-Authenticate` line parsed ([`challenge::from_header_lines`]),
//!   Bearer preferred to Basic; a Bearer `error=` on the first answer drops the handler and
//!   retries, on the same request twice fails ("authorization failed"); Basic without both a
//!   username and a password fails ("no basic auth credentials").
//! - `authHandler.doBearerAuth`: the token for `repository:<repo>:pull` merged with the
//!   challenge's own scopes, sorted and de-duplicated (`GetTokenScopes`), see [`super::token`].
//!
//! The `auth` phase is the time from the first 401 until the token (or the Basic credential)
//! is in hand; a registry that needs no auth has no `auth` phase. The challenge a host asked
//! for is remembered with the token, so a probe with a cached token is one request.
//!
//! With `check_platform`, the resolved manifest is fetched (`GET …/manifests/<digest>`, the
//! fetcher's request) and, when it is an image index, the node's platform must be in it
//! (containerd's `no match for platform in manifest`).

use std::collections::HashMap;
use std::fmt::Write as _;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use tokio::time::Instant;
use url::Url;

use super::challenge::{self, BearerChallenge, Challenge};
use super::dns::Dns;
use super::endpoint::EndpointRun;
use super::http::{Session, read_body};
use super::ratelimit;
use super::report::{EndpointResult, RateLimit};
use super::token::{KnownAuth, TokenCache};
use super::{StepError, Walk};
use crate::config::Target;
use crate::credentials::{Credential, Secret};
use crate::node::Flow;
use crate::node::proxy::ProxyEnv;
use crate::outcome::{Failure, Phase, Reason};
use crate::platform::Platform;

/// containerd's resolver Accept header: the node gets the digest it would pull.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, */*";

/// containerd `MaxManifestSize`: larger manifests are refused.
pub(crate) const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;
/// Error bodies and tag lists are read up to this size.
const MAX_BODY: usize = 1024 * 1024;
/// How many tags a `manifest_unknown` message suggests.
const SUGGESTED_TAGS: usize = 5;
/// containerd `retryRequest`: no retry once a request has this many responses.
const MAX_RESPONSES: usize = 5;
/// containers/image `backoffNumIterations`, `backoffInitialDelay`, `backoffMaxDelay`.
const CIMAGE_BACKOFF_ATTEMPTS: usize = 5;
const CIMAGE_BACKOFF_INITIAL: std::time::Duration = std::time::Duration::from_secs(2);
const CIMAGE_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(60);
/// containers/image `DefaultRequestedManifestMIMETypes`.
const CIMAGE_MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.v1+prettyjws, \
     application/vnd.docker.distribution.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.index.v1+json";

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// What the manifest phase learned, also on failure.
#[derive(Debug, Default)]
pub(crate) struct ManifestOutcome {
    pub digest: Option<String>,
    pub rate_limit: Option<RateLimit>,
}

/// An authorizer handler for one host: the ready `Authorization` value.
#[derive(Clone)]
struct Handler {
    header: HeaderValue,
    /// The Bearer challenge it answers (for invalidating a refused token).
    bearer: Option<BearerChallenge>,
    /// Set when the token came from an earlier probe; containerd starts every pull without one,
    /// so a refusal of it is forgotten rather than counted.
    cached: bool,
}

/// Why the authorizer could not act on a 401.
enum AuthError {
    /// containerd `ErrNotImplemented`: no usable scheme; the 401 stands.
    NotImplemented,
    Failed(Failure),
}

/// One pull attempt with one credential (or none), as containerd runs it for kubelet: the
/// resolver over the endpoints in order.
pub(crate) struct Attempt<'x, 'a> {
    pub eps: &'x mut [EndpointRun<'a>],
    /// The endpoint being asked.
    cur: usize,
    pub dns: &'a Dns,
    pub proxies: Option<&'a ProxyEnv>,
    pub deadline: Instant,
    pub target: &'x Target,
    pub tokens: &'x TokenCache,
    pub credential: Option<&'x Credential>,
    pub walk: &'x mut Walk,
    pub platform: Option<&'x Platform>,
    handlers: HashMap<String, Handler>,
    flow: Flow,
}

/// How one endpoint answered one path of `Resolve`.
enum PathOutcome {
    Found,
    NotFound,
    /// containerd "trying next host", with the error's priority (2.x `firstErrPriority`:
    /// transport and auth 1, another status 3, an oversize manifest 4; a 404 is 2).
    Next(Failure, u8),
}

/// A response with the URL that answered it (after redirects).
struct Answer {
    resp: Response<Incoming>,
    url: Url,
    method: Method,
}

/// Go's `URL.Host`: `host[:port]`, the port only when written.
fn url_host(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => String::new(),
    }
}

/// go-digest `Digest.Validate` for the algorithms it registers: `sha256`, `sha384`, `sha512`
/// with exactly their length of lowercase hex.
fn is_digest(d: &str) -> bool {
    d.split_once(':').is_some_and(|(alg, hex)| {
        let len = match alg {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            _ => return false,
        };
        hex.len() == len && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

fn sha256_digest(body: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, body);
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in d.as_ref() {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A status the manifest phase does not expect, classified.
fn unexpected(what: &str, status: StatusCode) -> StepError {
    let reason = match status {
        StatusCode::TOO_MANY_REQUESTS => Reason::RateLimited,
        s if s.is_server_error() => Reason::ServerError,
        _ => Reason::ProtocolError,
    };
    StepError::new(reason, format!("{what} answered {status}"))
}

impl<'x, 'a> Attempt<'x, 'a> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        eps: &'x mut [EndpointRun<'a>],
        dns: &'a Dns,
        proxies: Option<&'a ProxyEnv>,
        deadline: Instant,
        target: &'x Target,
        tokens: &'x TokenCache,
        credential: Option<&'x Credential>,
        walk: &'x mut Walk,
        platform: Option<&'x Platform>,
    ) -> Self {
        Attempt {
            eps,
            cur: 0,
            dns,
            proxies,
            deadline,
            target,
            tokens,
            credential,
            walk,
            platform,
            handlers: HashMap::new(),
            flow: Flow::Containerd,
        }
    }

    /// The credential offered to the endpoint being asked: kubelet's, unless the runtime keeps
    /// it from this endpoint (CRI-O, for a source on another registry).
    fn cred(&self) -> Option<&'x Credential> {
        self.credential
            .filter(|_| self.eps.get(self.cur).is_none_or(|e| e.ep.credentials))
    }

    /// The repository asked on the endpoint being asked (a CRI-O location may rewrite it).
    fn repo(&self) -> String {
        self.eps
            .get(self.cur)
            .and_then(|e| e.ep.repository.clone())
            .unwrap_or_else(|| self.target.image.repository().to_owned())
    }

    /// Sets whose request flow this attempt follows.
    pub(crate) fn with_flow(mut self, flow: Flow) -> Self {
        self.flow = flow;
        self
    }

    fn session(&mut self) -> &mut Session<'a> {
        self.eps[self.cur]
            .session
            .as_mut()
            .expect("an endpoint is connected before it is asked")
    }

    /// Makes endpoint `i` the one asked, connecting it first.
    async fn use_endpoint(&mut self, i: usize) -> Result<(), Failure> {
        self.cur = i;
        self.walk.current_endpoint = Some(i);
        let fresh = self.eps[i].session.is_none();
        self.eps[i]
            .connect(self.dns, self.proxies, &mut self.walk.rec, self.deadline)
            .await?;
        if fresh || !self.handlers.contains_key(&url_host(&self.eps[i].origin)) {
            self.restore_handler();
        }
        Ok(())
    }

    /// The repository scope containerd puts in the request context (`ContextWithRepositoryScope`).
    fn repository_scope(&self) -> String {
        format!("repository:{}:pull", self.repo())
    }

    /// containerd `GetTokenScopes`: the context scope and the challenge's, sorted, de-duplicated.
    fn scopes(&self, challenge: &BearerChallenge) -> String {
        let mut all = vec![self.repository_scope()];
        if let Some(s) = &challenge.scope {
            all.extend(s.split(' ').filter(|s| !s.is_empty()).map(str::to_owned));
        }
        all.sort();
        all.dedup();
        all.join(" ")
    }

    /// Reuses what an earlier probe learned about the registry host: Basic credentials, or a
    /// cached Bearer token for the same challenge.
    fn restore_handler(&mut self) {
        let host = url_host(&self.eps[self.cur].origin);
        let handler = match self.tokens.known(&host, self.cred()) {
            Some(KnownAuth::Basic) => self.basic_header().map(|header| Handler {
                header,
                bearer: None,
                cached: true,
            }),
            Some(KnownAuth::Bearer(ch)) => {
                let scope = self.scopes(&ch);
                self.tokens
                    .cached(&ch, &scope, self.cred())
                    .and_then(|t| bearer_header(&t))
                    .map(|header| Handler {
                        header,
                        bearer: Some(ch),
                        cached: true,
                    })
            }
            None => None,
        };
        if let Some(h) = handler {
            self.handlers.insert(host, h);
        }
    }

    fn basic_header(&self) -> Option<HeaderValue> {
        basic_header_for(self.cred()?)
    }

    /// The URL of `rest` (`<repo>/manifests/<ref>`) on the endpoint being asked.
    fn url(&self, rest: &str) -> Result<Url, Failure> {
        self.eps[self.cur].url(rest).ok_or_else(|| {
            Failure::new(
                Phase::Manifest,
                Reason::ProtocolError,
                format!("cannot build the request URL for {rest}"),
            )
        })
    }

    /// containerd `request.doWithRetries` for one request.
    async fn request(
        &mut self,
        method: Method,
        url: &Url,
        accept: &str,
    ) -> Result<Answer, Failure> {
        let mut method = method;
        // (method, URL) of the request behind each response, for `sameRequest`.
        let mut history: Vec<(Method, Url)> = Vec::new();
        loop {
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(accept) {
                headers.insert(ACCEPT, v);
            }
            // hosts.toml `[header]`: on every request to this host.
            for (name, value) in &self.eps[self.cur].ep.headers {
                if let (Ok(n), Ok(v)) = (
                    http::HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(value),
                ) {
                    headers.append(n, v);
                }
            }
            let handlers = &self.handlers;
            let authorize = |u: &Url| handlers.get(&url_host(u)).map(|h| h.header.clone());
            let session = self.eps[self.cur]
                .session
                .as_mut()
                .expect("an endpoint is connected before it is asked");
            let (resp, answered) = session
                .fetch_authorized(method.clone(), url, headers, Bytes::new(), &authorize)
                .await
                .map_err(|e| e.at(Phase::Manifest))?;
            let status = resp.status();
            let host = url_host(&answered);
            history.push((method.clone(), answered.clone()));
            let retry_allowed = history.len() <= MAX_RESPONSES;
            if self.flow == Flow::ContainersImage {
                // containers/image `makeRequestToResolvedURL`: credentials come from the ping's
                // challenge only (no retry on 401); 429 is retried with backoff.
                if status == StatusCode::TOO_MANY_REQUESTS
                    && history.len() < CIMAGE_BACKOFF_ATTEMPTS
                    && let Some(delay) = self.backoff(&resp, history.len())
                {
                    let _ = read_body(resp, MAX_BODY).await;
                    tokio::time::sleep(delay).await;
                    continue;
                }
                return Ok(Answer {
                    resp,
                    url: answered,
                    method,
                });
            }
            match status {
                StatusCode::UNAUTHORIZED if retry_allowed => {
                    if self.handlers.get(&host).is_some_and(|h| h.cached) {
                        // A token or password from an earlier probe was refused: forget it and
                        // start over as containerd does at the start of a pull.
                        let h = self.handlers.remove(&host).expect("checked above");
                        if let Some(ch) = &h.bearer {
                            let scope = self.scopes(ch);
                            self.tokens.invalidate(ch, &scope, self.cred());
                        }
                        self.tokens.forget(&host, self.cred());
                        history.pop();
                        let _ = read_body(resp, MAX_BODY).await;
                        continue;
                    }
                    let lines: Vec<Vec<u8>> = resp
                        .headers()
                        .get_all(WWW_AUTHENTICATE)
                        .iter()
                        .map(|v| v.as_bytes().to_vec())
                        .collect();
                    let headers = resp.headers().clone();
                    let _ = read_body(resp, MAX_BODY).await;
                    self.walk.rec.enter(Phase::Auth);
                    match self.add_responses(&history, &lines, &host, &headers).await {
                        Ok(()) => {
                            self.walk.rec.enter(Phase::Manifest);
                            continue;
                        }
                        Err(AuthError::Failed(f)) => return Err(f),
                        Err(AuthError::NotImplemented) => {
                            // containerd keeps the 401: the pull fails with it.
                            let schemes: Vec<String> =
                                challenge::unusable_schemes(lines.iter().map(Vec::as_slice))
                                    .into_iter()
                                    .filter(|s| s != "?")
                                    .collect();
                            return Err(if schemes.is_empty() {
                                Failure::new(
                                    Phase::Auth,
                                    Reason::ProtocolError,
                                    format!(
                                        "{host} answered 401 without a WWW-Authenticate challenge containerd can read, so the node cannot authenticate"
                                    ),
                                )
                            } else {
                                Failure::new(
                                    Phase::Auth,
                                    Reason::AuthRequired,
                                    format!(
                                        "{host} answered 401 asking for {} authentication, which containerd does not support (it speaks Bearer tokens and Basic)",
                                        schemes.join(", ")
                                    ),
                                )
                            });
                        }
                    }
                }
                StatusCode::METHOD_NOT_ALLOWED
                    if retry_allowed
                        && method == Method::HEAD
                        && url.path().contains("/manifests/") =>
                {
                    let _ = read_body(resp, MAX_BODY).await;
                    if self.target.image.is_docker_hub() {
                        return Err(Failure::new(
                            Phase::Manifest,
                            Reason::ProtocolError,
                            format!(
                                "{host} answered 405 to the manifest HEAD; containerd would retry with GET, which Docker Hub counts as a pull, so pullprobe stops here"
                            ),
                        ));
                    }
                    method = Method::GET;
                }
                StatusCode::REQUEST_TIMEOUT if retry_allowed => {
                    let _ = read_body(resp, MAX_BODY).await;
                }
                _ => {
                    return Ok(Answer {
                        resp,
                        url: answered,
                        method,
                    });
                }
            }
        }
    }

    /// containerd `dockerAuthorizer.AddResponses`.
    async fn add_responses(
        &mut self,
        history: &[(Method, Url)],
        lines: &[Vec<u8>],
        host: &str,
        headers: &HeaderMap,
    ) -> Result<(), AuthError> {
        // The first challenge of containerd's sorted list decides (Bearer before Basic).
        let first = challenge::from_header_lines(lines.iter().map(Vec::as_slice))
            .into_iter()
            .next();
        match first {
            None => Err(AuthError::NotImplemented),
            Some(Challenge::Bearer(ch)) => {
                if let Some(error) = &ch.error {
                    // containerd `invalidAuthorization`.
                    let n = history.len();
                    if n == 1 || history[n - 2] != history[n - 1] {
                        self.handlers.remove(host);
                    } else {
                        return Err(AuthError::Failed(self.denied(
                            headers,
                            error,
                            StatusCode::UNAUTHORIZED,
                        )));
                    }
                }
                if ch.error.as_deref() == Some("invalid_token") {
                    self.handlers.remove(host);
                }
                if self.handlers.contains_key(host) {
                    return Ok(());
                }
                return self.bearer(host, ch).await;
            }
            Some(Challenge::Basic { .. }) => {
                // containers/image `setupRequestAuth`: `SetBasicAuth` with whatever it has,
                // empty strings included; containerd needs a username and a password.
                let cimage = self.flow == Flow::ContainersImage;
                let usable = self
                    .cred()
                    .is_some_and(|c| !c.username.is_empty() && !c.password.expose().is_empty());
                if !cimage && !usable {
                    return Err(AuthError::Failed(Failure::new(
                        Phase::Auth,
                        Reason::AuthRequired,
                        match self.cred() {
                            None => format!(
                                "{host} asks for HTTP Basic credentials and none are configured for this image (containerd: no basic auth credentials)"
                            ),
                            Some(c) => format!(
                                "{host} asks for HTTP Basic credentials, but {} lacks a username or a password (containerd: no basic auth credentials)",
                                c.describe()
                            ),
                        },
                    )));
                }
                let c = self.cred().cloned().unwrap_or_default();
                let header = basic_header_for(&c).ok_or_else(|| {
                    AuthError::Failed(Failure::new(
                        Phase::Auth,
                        Reason::AuthFailed,
                        "the configured credentials contain characters that cannot be sent in a header",
                    ))
                })?;
                self.handlers.insert(
                    host.to_owned(),
                    Handler {
                        header,
                        bearer: None,
                        cached: false,
                    },
                );
                if !cimage {
                    self.tokens.remember(host, self.cred(), KnownAuth::Basic);
                }
                Ok(())
            }
        }
    }

    /// A new Bearer handler for `host`: the token in hand (containerd fetches it when the
    /// retried request is authorised).
    async fn bearer(&mut self, host: &str, ch: BearerChallenge) -> Result<(), AuthError> {
        if ch.realm.is_empty() {
            return Err(AuthError::Failed(Failure::new(
                Phase::Auth,
                Reason::ProtocolError,
                format!(
                    "{host} sent a Bearer challenge without a realm, so there is no token server to ask (containerd: no realm specified for token auth challenge)"
                ),
            )));
        }
        // Go's url.Parse (containerd `GenerateTokenOptions`) refuses control characters.
        if ch.realm.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err(AuthError::Failed(Failure::new(
                Phase::Auth,
                Reason::ProtocolError,
                format!(
                    "{host} sent a Bearer challenge whose realm contains control characters, which containerd cannot parse as a URL"
                ),
            )));
        }
        let scope = self.scopes(&ch);
        let tokens = self.tokens;
        let credential = self.cred();
        let flow = self.flow;
        let token = tokens
            .fetch(
                self.session(),
                &ch,
                &scope,
                credential,
                flow == Flow::ContainersImage,
            )
            .await
            .map_err(|e| AuthError::Failed(e.at(Phase::Auth)))?;
        let header = bearer_header(&token).ok_or_else(|| {
            AuthError::Failed(Failure::new(
                Phase::Auth,
                Reason::ProtocolError,
                "the token server sent a token that cannot be sent in a header",
            ))
        })?;
        // Only a challenge without a refusal is worth remembering for the next probe.
        let known = BearerChallenge {
            error: None,
            ..ch.clone()
        };
        self.tokens
            .remember(host, self.cred(), KnownAuth::Bearer(known));
        self.handlers.insert(
            host.to_owned(),
            Handler {
                header,
                bearer: Some(ch),
                cached: false,
            },
        );
        Ok(())
    }

    /// A manifest request refused with a token or credentials in hand: missing access, or
    /// Docker Hub's ambiguous answer.
    fn denied(&self, headers: &HeaderMap, error: &str, status: StatusCode) -> Failure {
        let shown = self.shown();
        let image = &self.target.image;
        let insufficient_scope = error == "insufficient_scope"
            || challenge::from_header_lines(headers.get_all(WWW_AUTHENTICATE).iter().map(|v| v.as_bytes()))
                .iter()
                .any(|c| matches!(c, Challenge::Bearer(b) if b.error.as_deref() == Some("insufficient_scope")));
        let who = self
            .cred()
            .map_or_else(|| "anonymous pulls".to_owned(), Credential::describe);
        if image.is_docker_hub() && status == StatusCode::UNAUTHORIZED && insufficient_scope {
            return Failure::new(
                Phase::Manifest,
                Reason::AuthRequired,
                format!(
                    "Docker Hub answered 401 insufficient_scope for {shown} with {who}: the repository does not exist, \
                     or it is private and these credentials may not pull it — Docker Hub answers both the same way and does not reveal which"
                ),
            );
        }
        let server = if error.is_empty() {
            String::new()
        } else {
            format!(" (server message: {error})")
        };
        match self.cred() {
            None => Failure::new(
                Phase::Manifest,
                Reason::AuthRequired,
                format!(
                    "{shown} needs credentials to pull ({status}{server}) and none are configured for this image"
                ),
            ),
            Some(c) => Failure::new(
                Phase::Manifest,
                Reason::AuthFailed,
                format!(
                    "{shown}: the registry does not let {} pull this repository ({status}{server})",
                    c.describe()
                ),
            ),
        }
    }

    fn shown(&self) -> String {
        match self
            .eps
            .get(self.cur)
            .and_then(|e| e.ep.repository.as_ref())
        {
            Some(r) if r != self.target.image.repository() => {
                format!("{}/{r}", self.eps[self.cur].ep.host)
            }
            _ => format!(
                "{}/{}",
                self.target.image.registry(),
                self.target.image.repository()
            ),
        }
    }

    /// Records how endpoint `i` answered (its latest answer stands).
    fn record(&mut self, i: usize, failure: Option<Failure>) {
        let ep = &self.eps[i].ep;
        let label = ep.label();
        let entry = EndpointResult {
            endpoint: label.clone(),
            upstream: ep.upstream,
            failure,
        };
        match self.walk.chain.iter_mut().find(|e| e.endpoint == label) {
            Some(e) => *e = entry,
            None => self.walk.chain.push(entry),
        }
        self.walk.current_endpoint = None;
    }

    /// containerd `dockerResolver.Resolve` over the endpoints (paths outer, hosts inner), then
    /// (with a platform) the fetcher's `GET` of the manifest and the platform check.
    pub(crate) async fn resolve(&mut self, out: &mut ManifestOutcome) -> Result<(), Failure> {
        let image = self.target.image.clone();
        if self.flow == Flow::ContainersImage {
            return self.resolve_containers_image(out).await;
        }
        let repo = image.repository();
        let digest = image.digest().map(str::to_owned);
        let mut paths = vec![format!("{repo}/manifests/{}", image.manifest_reference())];
        if let Some(d) = &digest {
            paths.push(format!("{repo}/blobs/{d}"));
        }
        let hosts: Vec<usize> = (0..self.eps.len())
            .filter(|&i| self.eps[i].ep.serves(digest.is_some()))
            .collect();
        if hosts.is_empty() {
            let what = if digest.is_some() { "pull" } else { "resolve" };
            return Err(Failure::new(
                Phase::Manifest,
                Reason::ManifestUnknown,
                format!(
                    "the node's registry configuration gives no host the `{what}` capability for {}, so containerd fails with `no resolve hosts: not found` — add \"{what}\" to a host's capabilities",
                    image.registry()
                ),
            ));
        }
        // 2.x `firstErr`/`firstErrPriority`: the error from furthest through the resolution.
        let mut best: Option<(Failure, u8)> = None;
        let mut last_not_found: Option<usize> = None;
        for path in &paths {
            for &i in &hosts {
                let outcome = match self.use_endpoint(i).await {
                    Err(f) => PathOutcome::Next(f, 1),
                    Ok(()) => match self.try_path(path, digest.as_deref(), out).await {
                        Ok(o) => o,
                        Err(f) => {
                            // An answer that stops the resolution is this endpoint's.
                            self.record(i, Some(f.clone()));
                            return Err(f);
                        }
                    },
                };
                match outcome {
                    PathOutcome::Found => {
                        self.record(i, None);
                        return Ok(());
                    }
                    PathOutcome::NotFound => {
                        last_not_found = Some(i);
                        let f = Failure::new(
                            Phase::Manifest,
                            Reason::ManifestUnknown,
                            format!(
                                "{} answered 404 Not Found for {}",
                                self.eps[i].ep.label(),
                                image.manifest_reference()
                            ),
                        );
                        self.record(i, Some(f));
                    }
                    PathOutcome::Next(f, priority) => {
                        self.record(i, Some(f.clone()));
                        if best.as_ref().is_none_or(|(_, p)| priority > *p) {
                            best = Some((f, priority));
                        }
                    }
                }
            }
        }
        match (best, last_not_found) {
            (Some((f, p)), _) if p > 2 => Err(f),
            (_, Some(i)) => {
                self.cur = i;
                let f = self.not_found().await;
                self.record(i, Some(f.clone()));
                Err(f)
            }
            (Some((f, _)), None) => Err(f),
            (None, None) => Err(Failure::new(
                Phase::Manifest,
                Reason::ManifestUnknown,
                format!("{image}: not found"),
            )),
        }
    }

    /// One path of `Resolve` on the endpoint being asked; `Err` stops the whole resolution
    /// (an invalid digest, a final redirect, a failed `GET` of the manifest, the platform check).
    async fn try_path(
        &mut self,
        path: &str,
        digest: Option<&str>,
        out: &mut ManifestOutcome,
    ) -> Result<PathOutcome, Failure> {
        let image = self.target.image.clone();
        let url = self.url(path)?;
        let answer = match self.request(Method::HEAD, &url, MANIFEST_ACCEPT).await {
            Ok(a) => a,
            Err(f) => return Ok(PathOutcome::Next(f, 1)),
        };
        if let Some(rl) = ratelimit::from_headers(answer.resp.headers()) {
            out.rate_limit = Some(rl);
        }
        let status = answer.resp.status();
        if status == StatusCode::NOT_FOUND {
            let _ = read_body(answer.resp, MAX_BODY).await;
            return Ok(PathOutcome::NotFound);
        }
        if status.is_redirection() {
            return Err(self.failed(answer, out).await);
        }
        if !status.is_success() {
            let f = self.failed(answer, out).await;
            return Ok(PathOutcome::Next(f, 3));
        }
        let headers = answer.resp.headers().clone();
        let _ = read_body(answer.resp, MAX_BODY).await;
        let size = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let media_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        // Bytes that are not text cannot be a digest either (Go reads them as a string).
        let header_digest = headers
            .get("docker-content-digest")
            .map(|v| v.to_str().unwrap_or("\u{fffd}").to_owned());
        let mut resolved = digest.map(str::to_owned);
        if resolved.is_none()
            && size.is_some()
            && let Some(d) = &header_digest
        {
            if !is_digest(d) {
                return Err(Failure::new(
                    Phase::Manifest,
                    Reason::ProtocolError,
                    format!(
                        "{} sent a Docker-Content-Digest that is not a valid digest, so containerd refuses the answer",
                        url_host(&answer.url)
                    ),
                ));
            }
            resolved = Some(d.clone());
        }
        let mut fetched: Option<(Bytes, Option<String>)> = None;
        if resolved.is_none() || size.is_none() {
            if image.is_docker_hub() {
                // containerd would GET the manifest to learn its digest; on Docker Hub that
                // is a pull, so pullprobe reports what it has instead.
                out.digest = None;
                return Ok(PathOutcome::Found);
            }
            let (body, mt) = self.get_manifest(&answer.url, MANIFEST_ACCEPT).await?;
            if resolved.is_none() {
                resolved = Some(sha256_digest(&body));
            }
            fetched = Some((body, mt));
        }
        let size = size.or_else(|| fetched.as_ref().map(|(b, _)| b.len() as u64));
        if size.is_some_and(|s| s > MAX_MANIFEST_SIZE) {
            return Ok(PathOutcome::Next(
                Failure::new(
                    Phase::Manifest,
                    Reason::ProtocolError,
                    format!(
                        "the manifest of {} on {} is {} bytes; containerd refuses manifests over {MAX_MANIFEST_SIZE} bytes",
                        image,
                        self.eps[self.cur].ep.label(),
                        size.unwrap_or_default()
                    ),
                ),
                4,
            ));
        }
        out.digest = resolved.clone();
        if let Some(platform) = self.platform {
            let resolved = resolved.unwrap_or_default();
            let (body, mt) = match fetched {
                Some(f) if digest.is_none() || sha256_digest(&f.0) == resolved => f,
                _ => {
                    self.fetch_manifest(&resolved, media_type.as_deref())
                        .await?
                }
            };
            check_platform(
                &body,
                mt.or(media_type).as_deref(),
                platform,
                &image.to_string(),
            )?;
        }
        Ok(PathOutcome::Found)
    }

    /// containerd's fetcher for a manifest: `GET …/manifests/<digest>` on every pull-capable
    /// endpoint in order until one serves it; the content must have the digest.
    async fn fetch_manifest(
        &mut self,
        resolved: &str,
        media_type: Option<&str>,
    ) -> Result<(Bytes, Option<String>), Failure> {
        let image = self.target.image.clone();
        let resolving = self.cur;
        let mut first_err: Option<Failure> = None;
        let mut own_err: Option<Failure> = None;
        let order: Vec<usize> = (0..self.eps.len())
            .filter(|&i| self.eps[i].ep.capabilities.pull)
            .collect();
        for i in order {
            if let Err(f) = self.use_endpoint(i).await {
                first_err.get_or_insert(f);
                continue;
            }
            let result = async {
                let url = self.url(&format!("{}/manifests/{resolved}", self.repo()))?;
                let accept = media_type.unwrap_or("*/*");
                self.get_manifest(&url, &format!("{accept}, */*")).await
            }
            .await;
            match result {
                Ok((body, mt)) => {
                    self.cur = resolving;
                    let actual = sha256_digest(&body);
                    if resolved.starts_with("sha256:") && actual != resolved {
                        return Err(Failure::new(
                            Phase::Manifest,
                            Reason::ProtocolError,
                            format!(
                                "the manifest {resolved} of {image} that the registry sent has another digest ({actual}), so containerd rejects it"
                            ),
                        ));
                    }
                    return Ok((body, mt));
                }
                Err(f) => {
                    if i == resolving {
                        own_err = Some(f);
                    } else {
                        first_err.get_or_insert(f);
                    }
                }
            }
        }
        self.cur = resolving;
        // containerd returns the first error; the failure of the endpoint that resolved the
        // reference says more (same verdict).
        Err(own_err.or(first_err).unwrap_or_else(|| {
            Failure::new(
                Phase::Manifest,
                Reason::ManifestUnknown,
                format!("no host serves the manifest {resolved} of {image}"),
            )
        }))
    }

    /// containers/image's delay before retrying a 429 (`parseRetryAfter`, doubling from 2 s),
    /// or `None` when it would not retry within the probe's deadline.
    fn backoff(
        &self,
        resp: &http::Response<Incoming>,
        attempt: usize,
    ) -> Option<std::time::Duration> {
        let doubled = CIMAGE_BACKOFF_INITIAL
            * 2u32.pow(u32::try_from(attempt.saturating_sub(1)).unwrap_or(0));
        let delay = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(doubled, std::time::Duration::from_secs)
            .min(CIMAGE_BACKOFF_MAX);
        (Instant::now() + delay < self.deadline).then_some(delay)
    }

    /// containers/image `newImageSource`: each pull source in order (mirrors, then the primary
    /// location) until one serves the manifest; when all fail, the primary's error.
    async fn resolve_containers_image(&mut self, out: &mut ManifestOutcome) -> Result<(), Failure> {
        let mut last: Option<Failure> = None;
        for i in 0..self.eps.len() {
            self.cur = i;
            match self.containers_image_source(i, out).await {
                Ok(()) => {
                    self.record(i, None);
                    return Ok(());
                }
                Err(f) => {
                    self.record(i, Some(f.clone()));
                    last = Some(f);
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            Failure::new(
                Phase::Manifest,
                Reason::ManifestUnknown,
                format!("CRI-O has no source to pull {} from", self.target.image),
            )
        }))
    }

    /// `newImageSourceAttempt`: the ping (`detectPropertiesHelper`: `GET /v2/` over HTTPS, then
    /// HTTP for an `insecure` source), then `GET` of the manifest with the credentials the
    /// ping's challenge asks for (`HEAD` on Docker Hub, where a `GET` counts as a pull).
    async fn containers_image_source(
        &mut self,
        i: usize,
        out: &mut ManifestOutcome,
    ) -> Result<(), Failure> {
        if let Some(why) = &self.eps[i].ep.blocked {
            return Err(Failure::new(
                Phase::Connect,
                Reason::ConnectError,
                why.clone(),
            ));
        }
        let insecure = self.eps[i].ep.tls.insecure_skip_verify;
        let mut ping = self.ping(i).await;
        if ping.is_err() && insecure && self.eps[i].origin.scheme() == "https" {
            self.eps[i].use_plain_http();
            ping = self.ping(i).await;
        }
        let challenge_lines = ping.map_err(|mut f| {
            f.message = format!(
                "pinging container registry {}: {}",
                self.eps[i].ep.host, f.message
            );
            f
        })?;
        if !challenge_lines.is_empty() {
            self.walk.rec.enter(Phase::Auth);
            let host = url_host(&self.eps[i].origin);
            match self
                .add_responses(&[], &challenge_lines, &host, &HeaderMap::new())
                .await
            {
                Ok(()) | Err(AuthError::NotImplemented) => {}
                Err(AuthError::Failed(f)) => return Err(f),
            }
            self.walk.rec.enter(Phase::Manifest);
        }
        let image = self.target.image.clone();
        let url = self.url(&format!(
            "{}/manifests/{}",
            self.repo(),
            image.manifest_reference()
        ))?;
        let method = if image.is_docker_hub() {
            Method::HEAD
        } else {
            Method::GET
        };
        let answer = self.request(method, &url, CIMAGE_MANIFEST_ACCEPT).await?;
        if let Some(rl) = ratelimit::from_headers(answer.resp.headers()) {
            out.rate_limit = Some(rl);
        }
        let status = answer.resp.status();
        if status == StatusCode::NOT_FOUND {
            let _ = read_body(answer.resp, MAX_BODY).await;
            return Err(self.not_found().await);
        }
        if status != StatusCode::OK {
            return Err(self.failed(answer, out).await);
        }
        let header_digest = answer
            .resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .filter(|d| is_digest(d))
            .map(str::to_owned);
        let media_type = answer
            .resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let body = read_body(answer.resp, MAX_MANIFEST_SIZE as usize)
            .await
            .map_err(|e| e.at(Phase::Manifest))?;
        out.digest = if body.is_empty() {
            header_digest
        } else {
            Some(
                image
                    .digest()
                    .map_or_else(|| sha256_digest(&body), str::to_owned),
            )
        };
        if let Some(platform) = self.platform
            && !body.is_empty()
        {
            check_platform(&body, media_type.as_deref(), platform, &image.to_string())?;
        }
        Ok(())
    }

    /// `GET /v2/` without credentials: the challenge lines of a 401, none for a 200; any other
    /// answer fails the source.
    async fn ping(&mut self, i: usize) -> Result<Vec<Vec<u8>>, Failure> {
        self.use_endpoint(i).await?;
        let url = self.eps[i]
            .origin
            .join(&format!("{}/", self.eps[i].ep.path))
            .map_err(|_| {
                Failure::new(
                    Phase::Manifest,
                    Reason::ProtocolError,
                    "cannot build the ping URL",
                )
            })?;
        let no_auth = |_: &Url| None;
        let (resp, _) = self
            .session()
            .fetch_authorized(Method::GET, &url, HeaderMap::new(), Bytes::new(), &no_auth)
            .await
            .map_err(|e| e.at(Phase::Manifest))?;
        let status = resp.status();
        let lines: Vec<Vec<u8>> = resp
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.as_bytes().to_vec())
            .collect();
        let _ = read_body(resp, MAX_BODY).await;
        match status {
            StatusCode::OK => Ok(Vec::new()),
            StatusCode::UNAUTHORIZED => Ok(lines),
            s => Err(
                unexpected(&format!("GET {}", super::http::redact_url(&url)), s)
                    .at(Phase::Manifest),
            ),
        }
    }

    /// `GET` of a manifest: containerd's fallback when `HEAD` lacks the digest or the size,
    /// and the fetcher's request for the platform check.
    async fn get_manifest(
        &mut self,
        url: &Url,
        accept: &str,
    ) -> Result<(Bytes, Option<String>), Failure> {
        let answer = self.request(Method::GET, url, accept).await?;
        let status = answer.resp.status();
        if !status.is_success() {
            return Err(self.failed(answer, &ManifestOutcome::default()).await);
        }
        let mt = answer
            .resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let body = read_body(answer.resp, MAX_MANIFEST_SIZE as usize)
            .await
            .map_err(|e| e.at(Phase::Manifest))?;
        Ok((body, mt))
    }

    /// A final status other than 2xx and 404.
    async fn failed(&mut self, answer: Answer, out: &ManifestOutcome) -> Failure {
        let status = answer.resp.status();
        let headers = answer.resp.headers().clone();
        let _ = read_body(answer.resp, MAX_BODY).await;
        let shown = self.shown();
        let reference = self.target.image.manifest_reference().to_owned();
        let what = format!(
            "{} manifest of {shown}:{reference} on {}",
            answer.method,
            url_host(&answer.url)
        );
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                let error = challenge::from_header_lines(
                    headers
                        .get_all(WWW_AUTHENTICATE)
                        .iter()
                        .map(|v| v.as_bytes()),
                )
                .into_iter()
                .find_map(|c| match c {
                    Challenge::Bearer(b) => b.error,
                    Challenge::Basic { .. } => None,
                })
                .unwrap_or_default();
                self.denied(&headers, &error, status)
            }
            StatusCode::PROXY_AUTHENTICATION_REQUIRED => {
                let proxy = self.eps[self.cur].via.as_ref().map_or_else(
                    || "a proxy".to_owned(),
                    |p| format!("the proxy {p} (from {})", p.origin()),
                );
                let sent = if self.eps[self.cur]
                    .via
                    .as_ref()
                    .is_some_and(crate::node::proxy::ProxyUrl::has_credentials)
                {
                    "refused the credentials in the proxy URL"
                } else {
                    "asks for credentials and the proxy URL has none (http://user:password@proxy:port)"
                };
                Failure::new(
                    Phase::Auth,
                    Reason::AuthFailed,
                    format!("{what}: {proxy} {sent} (407 Proxy Authentication Required)"),
                )
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
                Failure::new(
                    Phase::Manifest,
                    Reason::RateLimited,
                    format!("{what} answered 429 Too Many Requests{quota}"),
                )
            }
            s if s.is_redirection() => Failure::new(
                Phase::Manifest,
                Reason::ProtocolError,
                format!(
                    "{what} answered {s} without a usable Location (containerd: unexpected status code)"
                ),
            ),
            s => unexpected(&what, s).at(Phase::Manifest),
        }
    }

    /// Every path answered 404: ask the tag list (not a pull) whether the repository exists.
    async fn not_found(&mut self) -> Failure {
        let image = self.target.image.clone();
        let reference = image.manifest_reference().to_owned();
        let shown = self.shown();
        let is_digest = image.digest().is_some();
        let what = if is_digest { "digest" } else { "tag" };
        let unconfirmed = || {
            Failure::new(
                Phase::Manifest,
                Reason::ManifestUnknown,
                format!(
                    "{what} `{reference}` not found in {shown}, and the registry did not confirm that the repository exists \
                     (its tag list was not available) — check the repository path and the {what} in the pod spec"
                ),
            )
        };
        let Ok(url) = self.url(&format!("{}/tags/list", self.repo())) else {
            return unconfirmed();
        };
        let Ok(answer) = self.request(Method::GET, &url, "application/json").await else {
            return unconfirmed();
        };
        let status = answer.resp.status();
        let body = read_body(answer.resp, MAX_BODY).await;
        match (status, body) {
            (s, Ok(body)) if s.is_success() => {
                let tags = serde_json::from_slice::<TagList>(&body)
                    .ok()
                    .and_then(|t| t.tags)
                    .unwrap_or_default();
                let detail = if tags.is_empty() {
                    "the repository exists but has no tags".to_owned()
                } else if is_digest {
                    format!("the repository exists and has {} tags", tags.len())
                } else {
                    format!(
                        "the repository exists and has tags {}",
                        nearest_tags(&reference, &tags, SUGGESTED_TAGS).join(", ")
                    )
                };
                Failure::new(
                    Phase::Manifest,
                    Reason::ManifestUnknown,
                    format!(
                        "{what} `{reference}` not found in {shown}; {detail} — check the {what} in the pod spec"
                    ),
                )
            }
            (StatusCode::NOT_FOUND, body) => {
                let code = body
                    .ok()
                    .and_then(|b| serde_json::from_slice::<ErrorBody>(&b).ok())
                    .and_then(|e| e.errors.into_iter().next())
                    .map(|e| e.code);
                match code.as_deref() {
                    None | Some("NAME_UNKNOWN") => Failure::new(
                        Phase::Manifest,
                        Reason::NameUnknown,
                        format!(
                            "repository {shown} not found on {}",
                            self.eps[self.cur].ep.label()
                        ),
                    ),
                    Some(_) => unconfirmed(),
                }
            }
            _ => unconfirmed(),
        }
    }
}

/// `Authorization: Basic base64(user:password)`, marked sensitive.
fn basic_header_for(c: &Credential) -> Option<HeaderValue> {
    let raw = format!("{}:{}", c.username, c.password.expose());
    let encoded = Secret::new(base64::engine::general_purpose::STANDARD.encode(raw));
    let mut v = HeaderValue::from_str(&format!("Basic {}", encoded.expose())).ok()?;
    v.set_sensitive(true);
    Some(v)
}

fn bearer_header(token: &Secret) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(&format!("Bearer {}", token.expose())).ok()?;
    v.set_sensitive(true);
    Some(v)
}

#[derive(Deserialize)]
struct IndexDoc {
    #[serde(default, rename = "mediaType")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<IndexEntry>>,
}

#[derive(Deserialize)]
struct IndexEntry {
    #[serde(default)]
    platform: Option<PlatformDoc>,
}

#[derive(Deserialize)]
struct PlatformDoc {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

/// containerd `images.Manifest` with `platforms.Only(node)`: an index must list a manifest for
/// the node's platform (entries without a platform are given the benefit of the doubt: containerd
/// would read their config to decide). A single manifest is pulled whatever its platform.
fn check_platform(
    body: &[u8],
    media_type: Option<&str>,
    platform: &Platform,
    image: &str,
) -> Result<(), Failure> {
    let doc: IndexDoc = serde_json::from_slice(body).map_err(|e| {
        Failure::new(
            Phase::Manifest,
            Reason::ProtocolError,
            format!(
                "the manifest of {image} is not JSON (line {} column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    let is_index = media_type.is_some_and(|m| INDEX_TYPES.contains(&m))
        || doc
            .media_type
            .as_deref()
            .is_some_and(|m| INDEX_TYPES.contains(&m))
        || (media_type.is_none() && doc.manifests.is_some());
    if !is_index {
        return Ok(());
    }
    let entries = doc.manifests.unwrap_or_default();
    let mut offered = Vec::new();
    for e in &entries {
        let Some(p) = &e.platform else { return Ok(()) };
        let candidate = Platform {
            os: p.os.clone(),
            architecture: p.architecture.clone(),
            variant: p.variant.clone().unwrap_or_default(),
        };
        if platform.matches(&candidate) {
            return Ok(());
        }
        let shown = candidate.normalize().to_string();
        if shown != "unknown/unknown" && !offered.contains(&shown) {
            offered.push(shown);
        }
    }
    Err(Failure::new(
        Phase::Manifest,
        Reason::PlatformMissing,
        format!(
            "{image} is an image index for {} — nothing for this node's platform {platform}, so containerd fails with `no match for platform in manifest`",
            if offered.is_empty() {
                "no platform at all".to_owned()
            } else {
                offered.join(", ")
            }
        ),
    ))
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

    #[test]
    fn digests_are_validated_before_reporting() {
        assert!(is_digest(&format!("sha256:{}", "ab".repeat(32))));
        assert!(is_digest(&format!("sha512:{}", "0".repeat(128))));
        assert!(!is_digest(&format!("sha256:{}", "AB".repeat(32))));
        assert!(!is_digest(&format!("sha256:{}", "ab".repeat(31))));
        assert!(!is_digest(&format!("md5:{}", "ab".repeat(16))));
        assert!(!is_digest("sha256:"));
        assert!(!is_digest("sha256:<script>"));
        assert!(!is_digest("nodigest"));
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    fn index(platforms: &[&str]) -> Vec<u8> {
        let entries: Vec<serde_json::Value> = platforms
            .iter()
            .map(|p| {
                let parts: Vec<&str> = p.split('/').collect();
                let mut plat = serde_json::json!({"os": parts[0], "architecture": parts[1]});
                if let Some(v) = parts.get(2) {
                    plat["variant"] = (*v).into();
                }
                serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": format!("sha256:{}", "0".repeat(64)), "size": 1, "platform": plat})
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries}))
        .unwrap()
    }

    // containerd images.Manifest with platforms.Only: "no match for platform in manifest".
    #[test]
    fn platform_check_on_an_index() {
        let amd64 = Platform::parse("linux/amd64").unwrap();
        let arm_only = index(&["linux/arm64", "linux/arm/v7", "unknown/unknown"]);
        let f = check_platform(&arm_only, None, &amd64, "r/app:1").unwrap_err();
        assert_eq!(f.reason, Reason::PlatformMissing);
        assert_eq!(f.phase, Phase::Manifest);
        assert!(
            f.message.contains("linux/arm64, linux/arm/v7"),
            "{}",
            f.message
        );
        assert!(!f.message.contains("unknown"), "{}", f.message);
        assert!(f.message.contains("linux/amd64"), "{}", f.message);
        assert!(check_platform(&index(&["linux/amd64"]), None, &amd64, "x").is_ok());
        // arm64 nodes also run arm/v7 images (platformVector).
        let arm64 = Platform::parse("linux/arm64").unwrap();
        assert!(check_platform(&index(&["linux/arm/v7"]), None, &arm64, "x").is_ok());
        // A single manifest is pulled whatever its platform.
        let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;
        assert!(check_platform(manifest, None, &amd64, "x").is_ok());
        assert_eq!(
            check_platform(b"<html>", None, &amd64, "x")
                .unwrap_err()
                .reason,
            Reason::ProtocolError
        );
    }
}
