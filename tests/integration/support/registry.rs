//! A fake OCI registry and Docker-style token server on hyper 1, built with
//! [`FakeRegistry::builder`].
//!
//! It follows the distribution spec and Docker Hub's observed behaviour (NOTES.md §1–2):
//! - `GET /v2/` answers 200 `{}` without auth, else 401 with a `Basic` or `Bearer` challenge;
//! - `GET /token?service=…&scope=repository:<name>:pull` hands out random tokens that grant pull
//!   on the requested repositories (checked Basic credentials, or anonymous when
//!   `Auth::Bearer { user_pass: None, .. }`);
//! - `HEAD|GET /v2/<name>/manifests/<ref>` answers 200 with `Docker-Content-Digest` and the
//!   optional rate-limit headers, 404 `NAME_UNKNOWN` / `MANIFEST_UNKNOWN`, or (with
//!   `hub_semantics`) Docker Hub's 401 `insufficient_scope` for an unknown repository;
//! - `GET /v2/<name>/tags/list` lists the tags.
//!
//! - with [`FakeRegistryBuilder::image`], `HEAD|GET /v2/<name>/manifests/<tag|digest>` and
//!   `HEAD|GET /v2/<name>/blobs/<digest>` serve a real [`OciImage`] (index, manifests, configs,
//!   gzip tar layers) that `ctr images pull` fetches and unpacks.
//!
//! `v2_status` replaces the `/v2/` answer outright; `manifest_status` applies once a manifest
//! request is authorised. Every request either server sees is recorded, in order. Both servers
//! stop when the [`FakeRegistry`] is dropped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::{CancellationToken, DropGuard};

/// The `service` used in challenges when the registry is not configured for Bearer auth.
const DEFAULT_SERVICE: &str = "fake-registry";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const HUB_PULL_LIMIT: &str = "You have reached your pull rate limit. You may increase the limit \
                              by authenticating and upgrading: https://www.docker.com/increase-rate-limits";
/// What [`StatusOverride::Garbage`] writes instead of an HTTP response.
pub const GARBAGE: &[u8] = b"\x16\x03\x01\x00garbage, not HTTP\xff\xfe\r\n\r\n";

/// How the registry authenticates requests.
#[derive(Clone, Debug)]
pub enum Auth {
    /// Everything is public.
    None,
    /// `Authorization: Basic` with these credentials on every registry request.
    Basic { user: String, pass: String },
    /// Docker token auth. `user_pass: None` means the token server only issues anonymous tokens
    /// (and rejects any credentials); `Some` means it requires exactly these credentials.
    Bearer {
        user_pass: Option<(String, String)>,
        service: String,
    },
}

impl Auth {
    /// Docker token auth with the fake's usual service name; `None`: anonymous tokens only.
    pub fn bearer(user_pass: Option<(&str, &str)>) -> Auth {
        Auth::Bearer {
            user_pass: user_pass.map(|(u, p)| (u.to_owned(), p.to_owned())),
            service: "fake-registry".to_owned(),
        }
    }
}

/// Docker Hub's rate-limit headers: `ratelimit-limit: <limit>;w=<window>`,
/// `ratelimit-remaining: <remaining>;w=<window>`, `docker-ratelimit-source: <source>`.
#[derive(Clone, Debug)]
pub struct RateLimitHeaders {
    pub limit: u64,
    pub remaining: u64,
    pub window: u64,
    pub source: Option<String>,
}

impl RateLimitHeaders {
    /// Docker Hub's anonymous quota as it reports it: 100 pulls per 6 h (21 600 s), counted
    /// against the address 192.0.2.1, with `remaining` left.
    pub fn hub(remaining: u64) -> Self {
        RateLimitHeaders {
            limit: 100,
            remaining,
            window: 21600,
            source: Some("192.0.2.1".into()),
        }
    }
}

/// A forced answer for `/v2/` or manifest requests.
#[derive(Clone, Debug)]
pub enum StatusOverride {
    /// Docker Hub's pull-limit 429: JSON `TOOMANYREQUESTS` body; rate-limit headers (if
    /// configured) report 0 remaining.
    TooManyRequests,
    /// Docker Hub's abuse-limit 429: a plain-text body, no JSON.
    TooManyRequestsPlain,
    /// This status with a JSON error body (`UNAUTHORIZED`, `DENIED`, `UNAVAILABLE`, else `UNKNOWN`).
    Status(u16),
    /// 401 + `Bearer …,scope="repository:<name>:pull",error="insufficient_scope"`.
    HubInsufficientScope,
    /// Accepts the request and never answers.
    Hang,
    /// The first `times` manifest requests answer 429 with `Retry-After: <retry_after>`; the
    /// rest are served normally.
    TooManyRequestsFirst { times: usize, retry_after: u64 },
    /// Writes [`GARBAGE`] instead of a response, then closes the connection.
    Garbage,
}

/// How the token server answers `GET /token`.
#[derive(Clone, Debug)]
pub enum TokenBehavior {
    /// `{"token","access_token","expires_in"?,"issued_at"}`; `expires_in` omitted when `None`.
    Ok { expires_in: Option<u64> },
    /// Only the `token` field (Docker Hub before 2016).
    TokenOnly,
    /// Only the OAuth2 `access_token` field.
    AccessTokenOnly,
    /// 200 JSON with neither `token` nor `access_token`.
    NoTokenField,
    /// 200 with an HTML body.
    NotJson,
    /// This status with a `{"details":…}` body.
    Status(u16),
    /// Accepts the request and never answers.
    Hang,
    /// The first `times` manifest requests answer 429 with `Retry-After: <retry_after>`; the
    /// rest are served normally.
    TooManyRequestsFirst { times: usize, retry_after: u64 },
}

/// Which of the two servers saw a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    Registry,
    Token,
}

/// One request as either server saw it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub server: ServerKind,
    pub method: Method,
    pub path_and_query: String,
    pub authorization: Option<String>,
    pub host: Option<String>,
    pub accept: Option<String>,
    /// Every header as received.
    pub headers: http::HeaderMap,
}

/// Builder for [`FakeRegistry`]; see the module docs for the behaviour.
pub struct FakeRegistryBuilder {
    tls: Option<Arc<rustls::ServerConfig>>,
    token_tls: Option<Arc<rustls::ServerConfig>>,
    auth: Auth,
    realm_host: Option<String>,
    /// Listen on `::1` instead of `127.0.0.1`.
    ipv6: bool,
    repos: Vec<(String, Vec<String>)>,
    rate_limit: Option<RateLimitHeaders>,
    manifest_status: Option<StatusOverride>,
    v2_status: Option<StatusOverride>,
    token_behavior: TokenBehavior,
    hub_semantics: bool,
    images: Vec<(String, String, OciImage)>,
}

/// A running fake registry and token server.
pub struct FakeRegistry {
    pub addr: SocketAddr,
    pub token_addr: SocketAddr,
    state: Arc<State>,
    _stop: DropGuard,
}

struct Manifest {
    body: Bytes,
    digest: String,
}

struct State {
    auth: Auth,
    realm: String,
    repos: HashMap<String, BTreeMap<String, Manifest>>,
    rate_limit: Option<RateLimitHeaders>,
    manifest_status: Option<StatusOverride>,
    v2_status: Option<StatusOverride>,
    token_behavior: TokenBehavior,
    hub_semantics: bool,
    /// Repositories published with [`FakeRegistryBuilder::image`].
    images: HashMap<String, ImageRepo>,
    /// Issued token → repositories it grants pull on.
    tokens: Mutex<HashMap<String, HashSet<String>>>,
    requests: Mutex<Vec<RecordedRequest>>,
    /// Requests [`StatusOverride::TooManyRequestsFirst`] has answered.
    forced_count: std::sync::atomic::AtomicUsize,
}

type Resp = Response<Full<Bytes>>;

impl FakeRegistry {
    pub fn builder() -> FakeRegistryBuilder {
        FakeRegistryBuilder {
            tls: None,
            token_tls: None,
            auth: Auth::None,
            realm_host: None,
            ipv6: false,
            repos: Vec::new(),
            rate_limit: None,
            manifest_status: None,
            v2_status: None,
            token_behavior: TokenBehavior::Ok {
                expires_in: Some(300),
            },
            hub_semantics: false,
            images: Vec::new(),
        }
    }

    /// Every request both servers have seen, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Drops the recorded requests (long soak runs would otherwise keep them all).
    pub fn forget_requests(&self) {
        self.state.requests.lock().unwrap().clear();
    }

    /// Requests the token server has seen.
    pub fn token_requests_count(&self) -> usize {
        self.count(|r| r.server == ServerKind::Token)
    }

    /// Manifest `GET`s the registry has seen (a `GET` counts as a pull on Docker Hub).
    pub fn manifest_gets_count(&self) -> usize {
        self.count(|r| {
            r.server == ServerKind::Registry
                && r.method == Method::GET
                && r.path_and_query.contains("/manifests/")
        })
    }

    /// The `Docker-Content-Digest` the registry reports for `repo:tag`.
    pub fn digest(&self, repo: &str, tag: &str) -> Option<String> {
        Some(self.state.repos.get(repo)?.get(tag)?.digest.clone())
    }

    /// The `realm` URL put in Bearer challenges.
    pub fn realm(&self) -> &str {
        &self.state.realm
    }

    fn count(&self, pred: impl Fn(&RecordedRequest) -> bool) -> usize {
        self.state
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| pred(r))
            .count()
    }
}

impl FakeRegistryBuilder {
    /// Serve the registry (and, unless [`Self::token_tls`] is set, the token server) over TLS.
    pub fn tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Serve the token server over TLS with its own config.
    pub fn token_tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.token_tls = Some(config);
        self
    }

    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Put this host name in `realm=…` instead of `127.0.0.1` (the port stays the token port).
    pub fn token_realm_host(mut self, host: &str) -> Self {
        self.realm_host = Some(host.to_owned());
        self
    }

    /// Adds a repository with these tags.
    pub fn repo(mut self, name: &str, tags: &[&str]) -> Self {
        self.repos.push((
            name.to_owned(),
            tags.iter().map(|t| (*t).to_owned()).collect(),
        ));
        self
    }

    /// Rate-limit headers on manifest responses; `None` (the default) sends none.
    pub fn rate_limit(mut self, headers: Option<RateLimitHeaders>) -> Self {
        self.rate_limit = headers;
        self
    }

    pub fn manifest_status(mut self, status: StatusOverride) -> Self {
        self.manifest_status = Some(status);
        self
    }

    pub fn v2_status(mut self, status: StatusOverride) -> Self {
        self.v2_status = Some(status);
        self
    }

    pub fn token_behavior(mut self, behavior: TokenBehavior) -> Self {
        self.token_behavior = behavior;
        self
    }

    /// Both servers listen on `[::1]` (the realm says `[::1]` too) instead of `127.0.0.1`.
    pub fn ipv6(mut self) -> Self {
        self.ipv6 = true;
        self
    }

    /// Unknown repositories get Docker Hub's 401 `insufficient_scope` instead of 404.
    pub fn hub_semantics(mut self, on: bool) -> Self {
        self.hub_semantics = on;
        self
    }

    /// Publishes `image` as `name:tag`: the tag resolves to [`OciImage::digest`] and every blob
    /// of the image is served from `/v2/<name>/blobs/<digest>` (manifests and the index also
    /// from `/v2/<name>/manifests/<digest>`). Auth, `manifest_status` and rate-limit headers
    /// apply as for [`Self::repo`]. A name published here shadows the same name given to
    /// [`Self::repo`]; several tags of one name may carry different images.
    pub fn image(mut self, name: &str, tag: &str, image: OciImage) -> Self {
        self.images.push((name.to_owned(), tag.to_owned(), image));
        self
    }

    pub async fn start(self) -> FakeRegistry {
        let ip: IpAddr = if self.ipv6 {
            Ipv6Addr::LOCALHOST.into()
        } else {
            Ipv4Addr::LOCALHOST.into()
        };
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let token_listener = TcpListener::bind((ip, 0)).await.unwrap();
        let (addr, token_addr) = (
            listener.local_addr().unwrap(),
            token_listener.local_addr().unwrap(),
        );
        let token_tls = self.token_tls.or_else(|| self.tls.clone());
        let scheme = if token_tls.is_some() { "https" } else { "http" };
        let host = self.realm_host.unwrap_or_else(|| match token_addr.ip() {
            IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        });
        let repos = self
            .repos
            .into_iter()
            .map(|(name, tags)| {
                let manifests = tags
                    .into_iter()
                    .map(|tag| {
                        let manifest = make_manifest(&name, &tag);
                        (tag, manifest)
                    })
                    .collect();
                (name, manifests)
            })
            .collect();
        let mut images: HashMap<String, ImageRepo> = HashMap::new();
        for (name, tag, image) in self.images {
            let repo = images.entry(name).or_default();
            repo.tags.insert(tag, image.digest.clone());
            repo.blobs.extend(image.blobs);
        }
        let state = Arc::new(State {
            auth: self.auth,
            realm: format!("{scheme}://{host}:{}/token", token_addr.port()),
            repos,
            rate_limit: self.rate_limit,
            manifest_status: self.manifest_status,
            v2_status: self.v2_status,
            token_behavior: self.token_behavior,
            hub_semantics: self.hub_semantics,
            images,
            tokens: Mutex::default(),
            requests: Mutex::default(),
            forced_count: Default::default(),
        });
        let stop = CancellationToken::new();
        let servers = [
            (listener, self.tls, ServerKind::Registry),
            (token_listener, token_tls, ServerKind::Token),
        ];
        for (listener, tls, kind) in servers {
            let (state, token) = (state.clone(), stop.clone());
            super::spawn_until(&stop, async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let (state, tls) = (state.clone(), tls.clone());
                    super::spawn_until(&token, async move {
                        match tls {
                            Some(cfg) => {
                                if let Ok(tls) = TlsAcceptor::from(cfg).accept(tcp).await {
                                    serve_http(tls, state, kind).await;
                                }
                            }
                            None => serve_http(tcp, state, kind).await,
                        }
                    });
                }
            });
        }
        FakeRegistry {
            addr,
            token_addr,
            state,
            _stop: stop.drop_guard(),
        }
    }
}

/// A small OCI image manifest, unique per `name:tag`, and its digest.
fn make_manifest(name: &str, tag: &str) -> Manifest {
    let config = format!("{:x}", Sha256::digest(format!("{name}:{tag}")));
    let body = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{config}"),
            "size": 2,
        },
        "layers": [],
    })
    .to_string();
    let digest = format!("sha256:{:x}", Sha256::digest(&body));
    Manifest {
        body: Bytes::from(body),
        digest,
    }
}

/// Serves HTTP/1.1 on one connection. The IO is wrapped so a handler can replace its response
/// with [`GARBAGE`].
async fn serve_http<S>(io: S, state: Arc<State>, kind: ServerKind)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let garbage = Arc::new(AtomicBool::new(false));
    let io = TokioIo::new(GarbageIo {
        inner: io,
        armed: garbage.clone(),
        sent: 0,
    });
    let service = service_fn(move |req: Request<Incoming>| {
        let (state, garbage) = (state.clone(), garbage.clone());
        async move {
            state.record(kind, &req);
            let resp = match kind {
                ServerKind::Registry => state.registry(&req, &garbage).await,
                ServerKind::Token => state.token(&req).await,
            };
            Ok::<_, Infallible>(resp)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await;
}

impl State {
    fn record(&self, server: ServerKind, req: &Request<Incoming>) {
        let header = |name| {
            req.headers()
                .get(name)
                .map(|v: &http::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        self.requests.lock().unwrap().push(RecordedRequest {
            server,
            method: req.method().clone(),
            path_and_query: req
                .uri()
                .path_and_query()
                .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned()),
            authorization: header(AUTHORIZATION),
            host: header(HOST),
            accept: header(ACCEPT),
            headers: req.headers().clone(),
        });
    }

    async fn registry(&self, req: &Request<Incoming>, garbage: &AtomicBool) -> Resp {
        let path = req.uri().path();
        if path == "/v2/" || path == "/v2" {
            if let Some(forced) = &self.v2_status {
                return self.forced(forced, None, garbage).await;
            }
            if let Some(denied) = self.denial(req, None) {
                return denied;
            }
            return json_response(StatusCode::OK, json!({}));
        }
        let route = path.strip_prefix("/v2/").and_then(|rest| {
            if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
                Some((name, Some(reference)))
            } else {
                rest.strip_suffix("/tags/list").map(|name| (name, None))
            }
        });
        if let Some(resp) = self.image_request(req, path, garbage).await {
            return resp;
        }
        let Some((name, reference)) = route else {
            return error_response(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route", None);
        };
        let head_ok = reference.is_some() && req.method() == Method::HEAD;
        if req.method() != Method::GET && !head_ok {
            let detail = json!({"method": req.method().as_str()});
            return error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                "unsupported",
                Some(detail),
            );
        }
        if let Some(denied) = self.denial(req, Some(name)) {
            return denied;
        }
        let repo = self.repos.get(name);
        if repo.is_none() && self.hub_semantics {
            return self.insufficient_scope(name);
        }
        let Some(reference) = reference else {
            return match repo {
                Some(tags) => json_response(
                    StatusCode::OK,
                    json!({"name": name, "tags": tags.keys().collect::<Vec<_>>()}),
                ),
                None => name_unknown(name),
            };
        };
        if let Some(forced) = &self.manifest_status
            && self.still_forced(forced)
        {
            return self.forced(forced, Some(name), garbage).await;
        }
        let mut resp = match repo {
            None => name_unknown(name),
            Some(tags) => match tags
                .get(reference)
                .or_else(|| tags.values().find(|m| m.digest == reference))
            {
                None => error_response(
                    StatusCode::NOT_FOUND,
                    "MANIFEST_UNKNOWN",
                    "manifest unknown",
                    Some(json!({"Tag": reference})),
                ),
                Some(manifest) => Response::builder()
                    .header(CONTENT_TYPE, OCI_MANIFEST)
                    .header(CONTENT_LENGTH, manifest.body.len())
                    .header("docker-content-digest", &manifest.digest)
                    .header("etag", format!("\"{}\"", manifest.digest))
                    .body(Full::new(manifest.body.clone()))
                    .unwrap(),
            },
        };
        self.add_rate_limit(&mut resp, None);
        with_api_version(resp)
    }

    /// Checks the request's credentials for `/v2/` (`repo: None`) or a repository; returns the
    /// 401 to send if they do not suffice.
    fn denial(&self, req: &Request<Incoming>, repo: Option<&str>) -> Option<Resp> {
        let presented = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match &self.auth {
            Auth::None => None,
            Auth::Basic { user, pass } => {
                if presented == Some(basic(user, pass).as_str()) {
                    return None;
                }
                let mut resp = error_response(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHORIZED",
                    "authentication required",
                    None,
                );
                resp.headers_mut()
                    .insert(WWW_AUTHENTICATE, "Basic realm=\"fake\"".parse().unwrap());
                Some(resp)
            }
            Auth::Bearer { .. } => {
                let token = presented.and_then(|v| v.strip_prefix("Bearer "));
                let tokens = self.tokens.lock().unwrap();
                let error = match token.map(|t| tokens.get(t)) {
                    None => None,
                    Some(None) => Some("invalid_token"),
                    Some(Some(granted)) => match repo {
                        None => return None,
                        Some(repo) if granted.contains(repo) => return None,
                        Some(_) => Some("insufficient_scope"),
                    },
                };
                Some(self.bearer_401(repo, error))
            }
        }
    }

    /// A 401 with a Bearer challenge, as distribution and Docker Hub send it.
    fn bearer_401(&self, repo: Option<&str>, error: Option<&str>) -> Resp {
        let service = match &self.auth {
            Auth::Bearer { service, .. } => service.as_str(),
            _ => DEFAULT_SERVICE,
        };
        let mut challenge = format!("Bearer realm=\"{}\",service=\"{service}\"", self.realm);
        if let Some(repo) = repo {
            challenge.push_str(&format!(",scope=\"repository:{repo}:pull\""));
        }
        if let Some(error) = error {
            challenge.push_str(&format!(",error=\"{error}\""));
        }
        let detail =
            repo.map(|r| json!([{"Type": "repository", "Class": "", "Name": r, "Action": "pull"}]));
        let mut resp = error_response(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "authentication required",
            detail,
        );
        resp.headers_mut()
            .insert(WWW_AUTHENTICATE, challenge.parse().unwrap());
        resp
    }

    fn insufficient_scope(&self, repo: &str) -> Resp {
        self.bearer_401(Some(repo), Some("insufficient_scope"))
    }

    fn add_rate_limit(&self, resp: &mut Resp, remaining: Option<u64>) {
        let Some(rl) = &self.rate_limit else { return };
        let headers = resp.headers_mut();
        let remaining = remaining.unwrap_or(rl.remaining);
        headers.insert(
            "ratelimit-limit",
            format!("{};w={}", rl.limit, rl.window).parse().unwrap(),
        );
        headers.insert(
            "ratelimit-remaining",
            format!("{remaining};w={}", rl.window).parse().unwrap(),
        );
        if let Some(source) = &rl.source {
            headers.insert("docker-ratelimit-source", source.parse().unwrap());
        }
    }

    /// Whether `forced` still applies to this request (counts the limited ones).
    fn still_forced(&self, forced: &StatusOverride) -> bool {
        match forced {
            StatusOverride::TooManyRequestsFirst { times, .. } => {
                self.forced_count.fetch_add(1, Ordering::SeqCst) < *times
            }
            _ => true,
        }
    }

    async fn forced(
        &self,
        forced: &StatusOverride,
        repo: Option<&str>,
        garbage: &AtomicBool,
    ) -> Resp {
        match forced {
            StatusOverride::TooManyRequests => {
                let mut resp = error_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TOOMANYREQUESTS",
                    HUB_PULL_LIMIT,
                    None,
                );
                self.add_rate_limit(&mut resp, Some(0));
                resp
            }
            StatusOverride::TooManyRequestsPlain => Response::builder()
                .status(StatusCode::TOO_MANY_REQUESTS)
                .header(CONTENT_TYPE, "text/plain")
                .body(Full::new(Bytes::from_static(b"Too Many Requests\n")))
                .unwrap(),
            StatusOverride::Status(code) => {
                let status = StatusCode::from_u16(*code).expect("valid HTTP status");
                let code = match code {
                    401 => "UNAUTHORIZED",
                    403 => "DENIED",
                    429 => "TOOMANYREQUESTS",
                    503 => "UNAVAILABLE",
                    _ => "UNKNOWN",
                };
                error_response(status, code, "forced by the test", None)
            }
            StatusOverride::HubInsufficientScope => {
                with_api_version(self.bearer_401(repo, Some("insufficient_scope")))
            }
            StatusOverride::Hang => std::future::pending().await,
            StatusOverride::TooManyRequestsFirst { retry_after, .. } => {
                let mut resp = error_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TOOMANYREQUESTS",
                    "slow down",
                    None,
                );
                resp.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    retry_after.to_string().parse().unwrap(),
                );
                resp
            }
            StatusOverride::Garbage => {
                garbage.store(true, Ordering::SeqCst);
                Response::new(Full::default())
            }
        }
    }

    async fn token(&self, req: &Request<Incoming>) -> Resp {
        let details =
            |status: StatusCode, msg: &str| json_response(status, json!({"details": msg}));
        if req.uri().path() != "/token" {
            return details(StatusCode::NOT_FOUND, "not found");
        }
        if req.method() != Method::GET {
            return details(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported");
        }
        match &self.token_behavior {
            TokenBehavior::Hang => std::future::pending().await,
            TokenBehavior::Status(code) => {
                let status = StatusCode::from_u16(*code).expect("valid HTTP status");
                return details(status, "forced by the test");
            }
            TokenBehavior::NotJson => {
                return Response::builder()
                    .header(CONTENT_TYPE, "text/html")
                    .body(Full::new(Bytes::from_static(
                        b"<html><body>login</body></html>",
                    )))
                    .unwrap();
            }
            _ => {}
        }
        let (service, user_pass) = match &self.auth {
            Auth::Bearer { service, user_pass } => (service.as_str(), user_pass.as_ref()),
            _ => (DEFAULT_SERVICE, None),
        };
        let query = req.uri().query().unwrap_or("");
        let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        if !params.iter().any(|(k, v)| k == "service" && v == service) {
            return details(StatusCode::BAD_REQUEST, "invalid or missing service");
        }
        let presented = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match (presented, user_pass) {
            (None, None) => {}
            (Some(got), Some((user, pass))) if got == basic(user, pass) => {}
            (None, Some(_)) => return details(StatusCode::UNAUTHORIZED, "authentication required"),
            (Some(_), _) => {
                return details(StatusCode::UNAUTHORIZED, "incorrect username or password");
            }
        }
        // scope = repository:<name>:<actions>; <name> may itself contain ':' (host:port).
        let granted: HashSet<String> = params
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' '))
            .filter_map(|s| s.strip_prefix("repository:")?.rsplit_once(':'))
            .filter(|(_, actions)| actions.split(',').any(|a| a == "pull" || a == "*"))
            .map(|(name, _)| name.to_owned())
            .collect();
        let token = format!("fake-{:032x}", rand::random::<u128>());
        let issued_at = rfc3339_now();
        let body = match &self.token_behavior {
            TokenBehavior::Ok { expires_in } => {
                let mut body =
                    json!({"token": token, "access_token": token, "issued_at": issued_at});
                if let Some(secs) = expires_in {
                    body["expires_in"] = json!(secs);
                }
                body
            }
            TokenBehavior::TokenOnly => json!({"token": token, "issued_at": issued_at}),
            TokenBehavior::AccessTokenOnly => {
                json!({"access_token": token, "expires_in": 300, "issued_at": issued_at})
            }
            _ => json!({"expires_in": 300, "issued_at": issued_at}),
        };
        self.tokens.lock().unwrap().insert(token, granted);
        json_response(StatusCode::OK, body)
    }
}

fn basic(user: &str, pass: &str) -> String {
    format!("Basic {}", BASE64.encode(format!("{user}:{pass}")))
}

fn with_api_version(mut resp: Resp) -> Resp {
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        "registry/2.0".parse().unwrap(),
    );
    resp
}

fn json_response(status: StatusCode, body: Value) -> Resp {
    let resp = Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    with_api_version(resp)
}

/// `{"errors":[{"code","message","detail"}]}`, the distribution error body.
fn error_response(status: StatusCode, code: &str, message: &str, detail: Option<Value>) -> Resp {
    let error = json!({"code": code, "message": message, "detail": detail.unwrap_or(Value::Null)});
    json_response(status, json!({"errors": [error]}))
}

fn name_unknown(name: &str) -> Resp {
    let detail = json!({"name": name});
    error_response(
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
        "repository name not known to registry",
        Some(detail),
    )
}

/// Now as RFC 3339 UTC, e.g. `2026-11-22T02:49:00Z`.
fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (proleptic Gregorian, 400-year eras).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}

/// Passes IO through until `armed`; then the next write sends [`GARBAGE`], closes the write side
/// and fails, so hyper drops the connection without sending its response.
struct GarbageIo<S> {
    inner: S,
    armed: Arc<AtomicBool>,
    sent: usize,
}

impl<S: AsyncRead + Unpin> AsyncRead for GarbageIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GarbageIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.armed.load(Ordering::SeqCst) {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        while this.sent < GARBAGE.len() {
            match ready!(Pin::new(&mut this.inner).poll_write(cx, &GARBAGE[this.sent..]))? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                n => this.sent += n,
            }
        }
        ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "sent garbage",
        )))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A real, minimal OCI image for [`FakeRegistryBuilder::image`], complete enough for
/// `ctr images pull` to fetch and unpack it.
///
/// [`OciImage::index`] is an image index with one manifest per platform; [`OciImage::single`]
/// is a lone manifest (no index). Each manifest has a config blob (`os`, `architecture`,
/// `variant`, and `rootfs.diff_ids` holding the sha256 of the uncompressed layer, which
/// containerd checks when it unpacks) and one gzip-compressed tar layer with a single file,
/// `pullprobe.txt`, that names the platform. Every digest and size is the real one; the bytes
/// are deterministic, so the same platforms always give the same digests.
#[derive(Clone, Debug)]
pub struct OciImage {
    /// The digest a tag of this image resolves to: the index, or the manifest of `single`.
    pub digest: String,
    /// The media type of what [`Self::digest`] names.
    pub media_type: &'static str,
    /// `(platform, manifest digest)`, in the order given.
    pub manifests: Vec<(String, String)>,
    blobs: HashMap<String, Blob>,
}

#[derive(Clone, Debug)]
struct Blob {
    media_type: &'static str,
    body: Bytes,
}

/// The tags and blobs of one repository published with [`FakeRegistryBuilder::image`].
#[derive(Default)]
struct ImageRepo {
    tags: BTreeMap<String, String>,
    blobs: HashMap<String, Blob>,
}

impl OciImage {
    /// An image index over one manifest per platform (`os/arch[/variant]`, e.g. `linux/amd64`,
    /// `linux/arm/v7`).
    pub fn index(platforms: &[&str]) -> OciImage {
        let mut image = OciImage {
            digest: String::new(),
            media_type: OCI_INDEX,
            manifests: Vec::new(),
            blobs: HashMap::new(),
        };
        let mut entries = Vec::new();
        for platform in platforms {
            let mut descriptor = image.add_manifest(platform);
            descriptor["platform"] = platform_json(platform);
            entries.push(descriptor);
        }
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
        image.digest = image.add_blob(OCI_INDEX, index.to_string().into_bytes())["digest"]
            .as_str()
            .unwrap()
            .to_owned();
        image
    }

    /// A single-platform image: the tag names the manifest itself.
    pub fn single(platform: &str) -> OciImage {
        let mut image = OciImage {
            digest: String::new(),
            media_type: OCI_MANIFEST,
            manifests: Vec::new(),
            blobs: HashMap::new(),
        };
        let descriptor = image.add_manifest(platform);
        image.digest = descriptor["digest"].as_str().unwrap().to_owned();
        image
    }

    /// The manifest digest for `platform`, as given to the constructor.
    pub fn manifest_digest(&self, platform: &str) -> Option<&str> {
        self.manifests
            .iter()
            .find(|(p, _)| p == platform)
            .map(|(_, d)| d.as_str())
    }

    /// Builds the layer, config and manifest for `platform`; returns the manifest descriptor.
    fn add_manifest(&mut self, platform: &str) -> Value {
        let tar = tar_one_file(
            "pullprobe.txt",
            format!("pullprobe {platform}\n").as_bytes(),
        );
        let diff_id = format!("sha256:{:x}", Sha256::digest(&tar));
        let layer = self.add_blob(OCI_LAYER_GZIP, gzip_stored(&tar));
        let mut config = platform_json(platform);
        config["rootfs"] = json!({"type": "layers", "diff_ids": [diff_id]});
        config["config"] = json!({"Cmd": ["/pullprobe.txt"]});
        let config = self.add_blob(OCI_CONFIG, config.to_string().into_bytes());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config,
            "layers": [layer],
        });
        let descriptor = self.add_blob(OCI_MANIFEST, manifest.to_string().into_bytes());
        let digest = descriptor["digest"].as_str().unwrap().to_owned();
        self.manifests.push((platform.to_owned(), digest));
        descriptor
    }

    /// Stores a blob; returns its OCI descriptor (`mediaType`, `digest`, `size`).
    fn add_blob(&mut self, media_type: &'static str, body: Vec<u8>) -> Value {
        let digest = format!("sha256:{:x}", Sha256::digest(&body));
        let descriptor = json!({"mediaType": media_type, "digest": digest, "size": body.len()});
        let body = Bytes::from(body);
        self.blobs.insert(digest, Blob { media_type, body });
        descriptor
    }
}

/// `os/arch[/variant]` as the OCI `platform` object (also the config's platform fields).
fn platform_json(platform: &str) -> Value {
    let mut parts = platform.split('/');
    let (os, arch) = (parts.next().unwrap(), parts.next().expect("os/arch"));
    let mut value = json!({"os": os, "architecture": arch});
    if let Some(variant) = parts.next() {
        value["variant"] = json!(variant);
    }
    value
}

/// A ustar archive holding one regular file (mode 0644, owner 0:0, mtime 0).
fn tar_one_file(name: &str, data: &[u8]) -> Vec<u8> {
    assert!(name.len() < 100, "a ustar name field holds 99 bytes");
    let mut header = [0u8; 512];
    let mut field = |offset: usize, value: &[u8]| {
        header[offset..offset + value.len()].copy_from_slice(value);
    };
    field(0, name.as_bytes());
    field(100, b"0000644\0");
    field(108, b"0000000\0");
    field(116, b"0000000\0");
    field(124, format!("{:011o}\0", data.len()).as_bytes());
    field(136, b"00000000000\0");
    field(148, b"        ");
    field(156, b"0");
    field(257, b"ustar\0");
    field(263, b"00");
    let checksum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{checksum:06o}\0 ").as_bytes());
    let mut tar = header.to_vec();
    tar.extend_from_slice(data);
    tar.resize(tar.len().next_multiple_of(512), 0);
    // Two zero blocks end the archive.
    tar.resize(tar.len() + 1024, 0);
    tar
}

/// `data` as a gzip member of stored (uncompressed) deflate blocks: valid gzip without a
/// compression crate, and deterministic (mtime 0).
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut chunks = data.chunks(usize::from(u16::MAX)).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none()));
        let len = u16::try_from(chunk.len()).unwrap();
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
    out
}

/// CRC-32 (IEEE 802.3, reflected), as gzip's trailer carries it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

impl State {
    /// Serves `/v2/<name>/manifests/<ref>` and `/v2/<name>/blobs/<digest>` for repositories
    /// published with [`FakeRegistryBuilder::image`]; `None` for any other path.
    async fn image_request(
        &self,
        req: &Request<Incoming>,
        path: &str,
        garbage: &AtomicBool,
    ) -> Option<Resp> {
        let rest = path.strip_prefix("/v2/")?;
        let (name, reference, is_manifest) = match rest.rsplit_once("/manifests/") {
            Some((name, reference)) => (name, reference, true),
            None => {
                let (name, digest) = rest.rsplit_once("/blobs/")?;
                (name, digest, false)
            }
        };
        let repo = self.images.get(name)?;
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let detail = json!({"method": req.method().as_str()});
            return Some(error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                "unsupported",
                Some(detail),
            ));
        }
        if let Some(denied) = self.denial(req, Some(name)) {
            return Some(denied);
        }
        if is_manifest
            && let Some(forced) = &self.manifest_status
            && self.still_forced(forced)
        {
            return Some(self.forced(forced, Some(name), garbage).await);
        }
        let digest = repo.tags.get(reference).map_or(reference, String::as_str);
        let blob = repo
            .blobs
            .get(digest)
            .filter(|b| !is_manifest || matches!(b.media_type, OCI_MANIFEST | OCI_INDEX));
        let Some(blob) = blob else {
            return Some(if is_manifest {
                error_response(
                    StatusCode::NOT_FOUND,
                    "MANIFEST_UNKNOWN",
                    "manifest unknown",
                    Some(json!({"Tag": reference})),
                )
            } else {
                error_response(
                    StatusCode::NOT_FOUND,
                    "BLOB_UNKNOWN",
                    "blob unknown to registry",
                    Some(json!(digest)),
                )
            });
        };
        let mut resp = Response::builder()
            .header(CONTENT_TYPE, blob.media_type)
            .header(CONTENT_LENGTH, blob.body.len())
            .header("docker-content-digest", digest)
            .header("etag", format!("\"{digest}\""))
            .body(Full::new(blob.body.clone()))
            .unwrap();
        if is_manifest {
            self.add_rate_limit(&mut resp, None);
        }
        Some(with_api_version(resp))
    }
}
