//! What containerd's own client (Debian's `ctr`, containerd 1.6.20) does against the fakes:
//! the facts pullprobe's verdict must agree with (STYLE.md §0.8), pinned so that a containerd
//! upgrade that changes one fails here first. Each test names the containerd function
//! responsible; docs/containerd-differential.md collects them.
//!
//! `ctr content fetch-object` (no daemon) covers the resolve path; one private daemon per test
//! covers whole pulls. Without `ctr`/`containerd` on PATH the tests skip, unless
//! `PULLPROBE_REQUIRE_TOOLS` (set by scripts/test) or `CI` makes that a failure.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use sha2::Digest as _;
use tokio::io::AsyncReadExt as _;

use crate::docker_registry::require_tool;
use crate::support::containerd::{Containerd, CtrOpts, HostsDir, ctr_fetch_async};
use crate::support::hostile::{self, Hostile, RawRequest, Reply, response};
use crate::support::registry::{Auth, FakeRegistry, OciImage, RecordedRequest, ServerKind};
use crate::support::tls::{TestCa, Validity, server_config};

const OCI_MANIFEST: &[u8] = b"application/vnd.oci.image.manifest.v1+json";
/// A manifest body for the raw servers; its real digest is [`manifest_digest`].
const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
const USER: &str = "ctr-user";
const PASSWORD: &str = "ctr-Pa55word";

/// `ctr` is installed (else the test skips, or fails under `PULLPROBE_REQUIRE_TOOLS`).
fn have_ctr() -> bool {
    require_tool("ctr").is_some()
}

/// `ctr` and `containerd` are installed, and we are root (the daemon's unpack bind-mounts).
fn have_daemon() -> bool {
    have_ctr() && require_tool("containerd").is_some() && is_root("a containerd daemon")
}

/// Whether this process runs as root; if not, `what` is skipped, or fails the test where every
/// end-to-end test must run (`PULLPROBE_REQUIRE_TOOLS`).
fn is_root(what: &str) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    // /proc/self belongs to the effective user.
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        assert!(
            std::env::var_os("PULLPROBE_REQUIRE_TOOLS").is_none(),
            "{what} needs root"
        );
        eprintln!("SKIP: {what} needs root");
    }
    root
}

fn manifest_digest() -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(MANIFEST))
}

/// A 200 answer with [`MANIFEST`] (headers only for a `HEAD`).
fn manifest_reply(req: &RawRequest) -> Vec<u8> {
    let digest = manifest_digest();
    let headers: [(&str, &[u8]); 2] = [
        ("Content-Type", OCI_MANIFEST),
        ("Docker-Content-Digest", digest.as_bytes()),
    ];
    let mut out = response(200, &headers, MANIFEST.as_bytes());
    if req.method == "HEAD" {
        out.truncate(out.len() - MANIFEST.len());
    }
    out
}

/// "METHOD path" of every request the registry (not the token server) saw.
fn registry_lines(requests: &[RecordedRequest]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.server == ServerKind::Registry)
        .map(|r| format!("{} {}", r.method, r.path_and_query))
        .collect()
}

fn raw_lines(requests: &[RawRequest]) -> Vec<String> {
    requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.target))
        .collect()
}

fn auth_of(req: &RawRequest) -> Option<String> {
    req.header("authorization")
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

// --- a. loopback defaults ----------------------------------------------------------------

/// `config.ConfigureHosts` (remotes/docker/config/hosts.go): with no hosts.toml for the host,
/// a loopback registry (`docker.IsLocalhost`: `localhost` or a loopback IP, any port) gets
/// scheme `http` (ctr passes no `DefaultScheme`). An empty `--hosts-dir` changes nothing:
/// `HostDirFromRoot` finds no directory and the same default is used.
#[tokio::test(flavor = "multi_thread")]
async fn loopback_registry_without_hosts_toml_is_plain_http() {
    if !have_ctr() {
        return;
    }
    let reg = FakeRegistry::builder().repo("app", &["1"]).start().await;
    let port = reg.addr.port();
    let empty = HostsDir::new();
    for (reference, opts) in [
        (format!("127.0.0.1:{port}/app:1"), CtrOpts::default()),
        (format!("localhost:{port}/app:1"), CtrOpts::default()),
        (
            format!("127.0.0.1:{port}/app:1"),
            CtrOpts::default().hosts_dir(empty.path()),
        ),
    ] {
        reg.forget_requests();
        let out = ctr_fetch_async(&reference, &opts).await;
        out.assert_ok();
        assert!(
            out.stdout.contains(r#""schemaVersion":2"#),
            "stdout is the manifest: {out}"
        );
        assert_eq!(
            registry_lines(&reg.requests()),
            [
                "HEAD /v2/app/manifests/1".to_owned(),
                format!("GET /v2/app/manifests/{}", reg.digest("app", "1").unwrap()),
            ],
            "{reference}: plain HTTP, and no /v2/ ping"
        );
    }
}

/// The same default makes a TLS-only loopback registry unreachable without a hosts.toml:
/// ctr 1.6.20 never tries https on a loopback host (no `HTTPFallback` before 1.6.25; the
/// `skip_verify` it sets for the default loopback host only matters if the scheme were https).
/// A hosts.toml `[host."https://…"]` entry gets no implicit `skip_verify` — even on loopback —
/// so the untrusted certificate then fails verification, until `skip_verify = true`.
#[tokio::test(flavor = "multi_thread")]
async fn loopback_tls_registry_needs_a_hosts_toml() {
    if !have_ctr() {
        return;
    }
    pullprobe::install_crypto_provider();
    let untrusted = TestCa::new("nobody trusts this CA");
    let leaf = untrusted.leaf(&["127.0.0.1", "localhost"], Validity::Valid);
    let reg = FakeRegistry::builder()
        .tls(server_config(&leaf))
        .repo("app", &["1"])
        .start()
        .await;
    let host = format!("127.0.0.1:{}", reg.addr.port());
    let reference = format!("{host}/app:1");

    let out = ctr_fetch_async(&reference, &CtrOpts::default()).await;
    out.assert_err("failed to do request: Head \"http://127.0.0.1:");
    assert!(reg.requests().is_empty(), "rustls saw no HTTP request");

    let hosts = HostsDir::new();
    hosts.hosts_toml(&host, &format!("[host.\"https://{host}\"]\n"));
    let opts = CtrOpts::default().hosts_dir(hosts.path());
    ctr_fetch_async(&reference, &opts)
        .await
        .assert_err("x509: certificate signed by unknown authority");

    hosts.hosts_toml(
        &host,
        &format!("[host.\"https://{host}\"]\n  skip_verify = true\n"),
    );
    ctr_fetch_async(&reference, &opts).await.assert_ok();

    // A hosts.toml with `server` but no [host] table is rejected by containerd 1.6/1.7
    // (`getSortedHosts`: "invalid `host` tree"; go-toml v1), logged, and replaced by the
    // Docker-style certificate files of the directory (`loadCertFiles`; none here): the
    // defaults again, plain HTTP. containerd 2.0 (go-toml v2) accepts such a file.
    hosts.hosts_toml(&host, &format!("server = \"https://{host}\"\n"));
    let out = ctr_fetch_async(&reference, &opts).await;
    out.assert_err("failed to do request: Head \"http://127.0.0.1:");
    assert!(
        out.stderr
            .contains(r#"msg="failed to decode hosts.toml" error="invalid `host` tree""#),
        "{out}"
    );
}

/// What first byte each connection to a listener sent: 0x16 for a TLS ClientHello, an ASCII
/// letter for HTTP. The listener closes every connection after that byte.
struct Sniffer {
    first_bytes: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sniffer {
    async fn start(addr: SocketAddr) -> Sniffer {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("binding {addr}: {e}"));
        let first_bytes = Arc::new(Mutex::new(Vec::new()));
        let seen = first_bytes.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut byte = [0u8; 1];
                if stream.read_exact(&mut byte).await.is_ok() {
                    seen.lock().unwrap().push(byte[0]);
                }
            }
        });
        Sniffer { first_bytes, task }
    }

    fn schemes(&self) -> Vec<&'static str> {
        let bytes = self.first_bytes.lock().unwrap();
        bytes
            .iter()
            .map(|&b| if b == 0x16 { "https" } else { "http" })
            .collect()
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A random address in 127.0.0.0/8 (not 127.0.0.1), so ports 80 and 443 are free even while
/// other tests or services use them on 127.0.0.1.
fn random_loopback() -> Ipv4Addr {
    let [a, b, c]: [u8; 3] = rand::random();
    Ipv4Addr::new(127, a.max(2), b, c.clamp(1, 254))
}

/// Ports 443 and 80 are not special for loopback in containerd 1.6.20: `ConfigureHosts` picks
/// http for `127.x.y.z:443` too, and an image on `127.x.y.z` (no port) is fetched from
/// `http://127.x.y.z/` (port 80). containerd 1.6.25 and 1.7.8 changed this (d48ceb606, "Avoid
/// TLS fallback when protocol is not ambiguous"): https only for no port or 443, https first
/// with `docker.HTTPFallback` to http for other ports, and no `skip_verify` on port 80.
#[tokio::test(flavor = "multi_thread")]
async fn loopback_ports_443_and_80_are_plain_http_too() {
    if !have_ctr() || !is_root("binding ports 80 and 443") {
        return;
    }
    let ip = random_loopback();
    let on_443 = Sniffer::start(SocketAddr::new(IpAddr::V4(ip), 443)).await;
    let on_80 = Sniffer::start(SocketAddr::new(IpAddr::V4(ip), 80)).await;
    let out = ctr_fetch_async(&format!("{ip}:443/app:1"), &CtrOpts::default()).await;
    assert!(!out.ok, "{out}");
    assert_eq!(on_443.schemes(), ["http"], "{out}");

    let out = ctr_fetch_async(&format!("{ip}/app:1"), &CtrOpts::default()).await;
    assert!(!out.ok, "{out}");
    assert_eq!(on_80.schemes(), ["http"], "{out}");
    assert_eq!(on_443.schemes(), ["http"], "nothing more on 443: {out}");
}

// --- b. the request flow ---------------------------------------------------------------------

/// `dockerResolver.Resolve` (remotes/docker/resolver.go) starts with `HEAD
/// /v2/<repo>/manifests/<tag>`, never `GET /v2/`; the 401 goes to `dockerAuthorizer.AddResponses`,
/// which fetches an anonymous token with `GET <realm>?scope=…&service=…`, then the HEAD is
/// retried with it. The fetcher then `GET`s the manifest by digest — starting without a
/// token: `ConfigureHosts` builds a new authorizer each time the resolver asks for the hosts
/// (once for `Resolve`, once for `Fetcher`), so the second one challenges and fetches again.
#[tokio::test(flavor = "multi_thread")]
async fn resolve_sends_manifest_head_first_and_no_v2_ping() {
    if !have_ctr() {
        return;
    }
    let reg = FakeRegistry::builder()
        .auth(Auth::Bearer {
            user_pass: None,
            service: "fake-registry".into(),
        })
        .repo("team/app", &["1"])
        .start()
        .await;
    let reference = format!("127.0.0.1:{}/team/app:1", reg.addr.port());
    ctr_fetch_async(&reference, &CtrOpts::default())
        .await
        .assert_ok();
    let digest = reg.digest("team/app", "1").unwrap();
    let requests = reg.requests();
    let lines: Vec<String> = requests
        .iter()
        .map(|r| format!("{:?} {} {}", r.server, r.method, r.path_and_query))
        .collect();
    let token = "Token GET /token?scope=repository%3Ateam%2Fapp%3Apull&service=fake-registry";
    assert_eq!(
        lines,
        [
            "Registry HEAD /v2/team/app/manifests/1",
            token,
            "Registry HEAD /v2/team/app/manifests/1",
            &format!("Registry GET /v2/team/app/manifests/{digest}"),
            token,
            &format!("Registry GET /v2/team/app/manifests/{digest}"),
        ]
    );
    let bearer: Vec<bool> = requests
        .iter()
        .map(|r| {
            r.authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("Bearer fake-"))
        })
        .collect();
    assert_eq!(bearer, [false, false, true, false, false, true]);
    let accept = requests[0].accept.as_deref().unwrap_or_default();
    for media_type in [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "*/*",
    ] {
        assert!(accept.contains(media_type), "{media_type} in {accept}");
    }
}

/// A registry on the raw server with Bearer auth whose realm is itself: manifest `HEAD` and
/// `GET` answer [`MANIFEST`] with `Bearer` [`hostile::TOKEN`], else 401 with the challenge;
/// `/token` is answered by [`token_reply`] with status 200.
fn bearer_registry(req: &RawRequest, me: SocketAddr) -> Reply {
    if req.path() == "/token" {
        return Reply::Bytes(token_reply(req, 200));
    }
    if auth_of(req).is_some_and(|a| a == format!("Bearer {}", hostile::TOKEN)) {
        return Reply::Bytes(manifest_reply(req));
    }
    let challenge = hostile::challenge_for(me);
    Reply::Bytes(response(
        401,
        &[("WWW-Authenticate", challenge.as_bytes())],
        b"",
    ))
}

// --- c. several challenges ----------------------------------------------------------------------

/// A registry on the raw server whose manifest requests answer 401 with each of `challenges`
/// as its own `WWW-Authenticate` header (`{me}` is replaced by the server's address) until they
/// carry `Bearer <TOKEN>` or Basic `USER:PASSWORD`. `/token` hands out `TOKEN` to GET (as
/// `token`) and POST (as `access_token`).
async fn challenging(challenges: &'static [&'static str]) -> Hostile {
    Hostile::start(move |req, me| {
        let auth = auth_of(req).unwrap_or_default();
        if req.path() == "/token" {
            return Reply::Bytes(token_reply(req, 200));
        }
        let basic = format!("Basic {}", base64_user());
        if auth == format!("Bearer {}", hostile::TOKEN) || auth == basic {
            return Reply::Bytes(manifest_reply(req));
        }
        let values: Vec<String> = challenges
            .iter()
            .map(|c| c.replace("{me}", &me.to_string()))
            .collect();
        let headers: Vec<(&str, &[u8])> = values
            .iter()
            .map(|v| ("WWW-Authenticate", v.as_bytes()))
            .collect();
        Reply::Bytes(response(401, &headers, b""))
    })
    .await
}

/// The token endpoint's answer: `status`; on 200 `{"token"}` to GET, `{"access_token"}` to POST.
fn token_reply(req: &RawRequest, status: u16) -> Vec<u8> {
    if status != 200 {
        return response(status, &[("Content-Type", b"application/json")], b"{}");
    }
    let field = if req.method == "POST" {
        "access_token"
    } else {
        "token"
    };
    hostile::json(format!(r#"{{"{field}":"{}","expires_in":300}}"#, hostile::TOKEN).as_bytes())
}

fn base64_user() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
}

/// `auth.ParseAuthHeader` (remotes/docker/auth/parse.go) reads every `WWW-Authenticate` value,
/// drops unknown schemes (`Negotiate`) and stable-sorts Bearer before Basic; `AddResponses`
/// takes the first Bearer, or a Basic only when credentials were given. So Basic+Bearer uses
/// Bearer (with or without `--user`), Negotiate+Bearer uses Bearer, Basic alone needs
/// `--user`, and Negotiate alone ends as the plain 401.
#[tokio::test(flavor = "multi_thread")]
async fn several_challenges_bearer_wins_and_unknown_schemes_are_skipped() {
    if !have_ctr() {
        return;
    }
    const BASIC_THEN_BEARER: &[&str] = &[
        r#"Basic realm="x""#,
        r#"Bearer realm="http://{me}/token",service="hostile""#,
    ];
    const NEGOTIATE_THEN_BEARER: &[&str] = &[
        "Negotiate",
        r#"Bearer realm="http://{me}/token",service="hostile""#,
    ];
    const BASIC_ONLY: &[&str] = &[r#"Basic realm="x""#];
    const NEGOTIATE_ONLY: &[&str] = &["Negotiate"];
    let user = CtrOpts::default().user(USER, PASSWORD);
    let cases: [(&[&str], &CtrOpts, Result<&str, &str>); 6] = [
        (BASIC_THEN_BEARER, &CtrOpts::default(), Ok("Bearer")),
        (BASIC_THEN_BEARER, &user, Ok("Bearer")),
        (NEGOTIATE_THEN_BEARER, &CtrOpts::default(), Ok("Bearer")),
        (BASIC_ONLY, &user, Ok("Basic")),
        (BASIC_ONLY, &CtrOpts::default(), Err("401 Unauthorized")),
        (NEGOTIATE_ONLY, &user, Err("401 Unauthorized")),
    ];
    for (challenges, opts, expected) in cases {
        let server = challenging(challenges).await;
        let out = ctr_fetch_async(&format!("{}/app:1", server.addr), opts).await;
        let requests = server.requests();
        match expected {
            Ok(scheme) => {
                out.assert_ok();
                let last = requests.last().unwrap();
                assert!(
                    auth_of(last).is_some_and(|a| a.starts_with(scheme)),
                    "{challenges:?} with user {:?}: {:?}",
                    opts.user.is_some(),
                    raw_lines(&requests)
                );
            }
            Err(text) => {
                out.assert_err(text);
                assert!(
                    out.error().starts_with("pulling from host 127.0.0.1:"),
                    "{out}"
                );
                assert_eq!(
                    raw_lines(&requests),
                    ["HEAD /v2/app/manifests/1"],
                    "{challenges:?}: one try, no token request"
                );
            }
        }
    }
}

// --- d. 405 on the manifest HEAD --------------------------------------------------------------

/// `request.retryRequest` (resolver.go): a 405 to a `HEAD …/manifests/…` is retried at once
/// as a `GET` of the same URL, on the same host.
#[tokio::test(flavor = "multi_thread")]
async fn manifest_head_405_is_retried_as_get() {
    if !have_ctr() {
        return;
    }
    let server = Hostile::start(|req, _| {
        Reply::Bytes(if req.method == "HEAD" {
            response(405, &[], b"")
        } else {
            manifest_reply(req)
        })
    })
    .await;
    let out = ctr_fetch_async(&format!("{}/app:1", server.addr), &CtrOpts::default()).await;
    out.assert_ok();
    assert_eq!(
        raw_lines(&server.requests()),
        [
            "HEAD /v2/app/manifests/1".to_owned(),
            "GET /v2/app/manifests/1".to_owned(),
            format!("GET /v2/app/manifests/{}", manifest_digest()),
        ]
    );
}

// --- e. token fetch with credentials -------------------------------------------------------------

/// `authHandler.doBearerAuth` (remotes/docker/authorizer.go): with `--user`, the token is
/// first requested with `auth.FetchTokenWithOAuth`, a form `POST` (`grant_type=password`,
/// `client_id=containerd-client`); on 400, 401, 404 and (with a username) 405 it falls back to
/// `auth.FetchToken`, a `GET` with Basic credentials. Any other status fails the pull, and so
/// does a 200 without `access_token` (no fallback: `ErrNoToken`).
#[tokio::test(flavor = "multi_thread")]
async fn token_post_first_then_get_on_400_401_404_405() {
    if !have_ctr() {
        return;
    }
    // (POST status, POST answers 200 without access_token?, expected outcome)
    let cases: [(u16, bool, Result<(), &str>); 8] = [
        (200, false, Ok(())),
        (400, false, Ok(())),
        (401, false, Ok(())),
        (404, false, Ok(())),
        (405, false, Ok(())),
        (
            403,
            false,
            // The status line as sent (the raw server's reason phrase is "Whatever").
            Err("failed to authorize: failed to fetch oauth token: unexpected status: 403 "),
        ),
        (
            500,
            false,
            Err("failed to authorize: failed to fetch oauth token: unexpected status: 500 "),
        ),
        (
            200,
            true,
            Err(
                "failed to authorize: failed to fetch oauth token: authorization server did not include a token in the response",
            ),
        ),
    ];
    for (post_status, token_only, expected) in cases {
        let server = Hostile::start(move |req, me| {
            if req.path() == "/token" {
                return Reply::Bytes(match (req.method.as_str(), token_only) {
                    ("POST", true) => hostile::json(b"{\"token\":\"not-an-access-token\"}"),
                    ("POST", false) => token_reply(req, post_status),
                    _ => token_reply(req, 200),
                });
            }
            bearer_registry(req, me)
        })
        .await;
        let opts = CtrOpts::default().user(USER, PASSWORD);
        let out = ctr_fetch_async(&format!("{}/app:1", server.addr), &opts).await;
        let requests = server.requests();
        let token_requests: Vec<&RawRequest> =
            requests.iter().filter(|r| r.path() == "/token").collect();
        assert_eq!(token_requests[0].method, "POST", "{post_status}");
        assert_eq!(
            token_requests[0].header("content-type"),
            Some(&b"application/x-www-form-urlencoded; charset=utf-8"[..]),
        );
        assert_eq!(
            auth_of(token_requests[0]),
            None,
            "the POST carries the password in its form, not a header"
        );
        let methods: Vec<&str> = token_requests.iter().map(|r| r.method.as_str()).collect();
        // Twice when it works: the resolver and the fetcher each start with a fresh authorizer.
        match expected {
            Ok(()) if post_status == 200 => {
                out.assert_ok();
                assert_eq!(methods, ["POST", "POST"], "{:?}", raw_lines(&requests));
            }
            Ok(()) => {
                out.assert_ok();
                assert_eq!(
                    methods,
                    ["POST", "GET", "POST", "GET"],
                    "{post_status}: {:?}",
                    raw_lines(&requests)
                );
                let get = token_requests[1];
                assert_eq!(get.method, "GET");
                assert_eq!(auth_of(get), Some(format!("Basic {}", base64_user())));
                assert!(
                    get.target.contains("scope=repository%3Aapp%3Apull"),
                    "{}",
                    get.target
                );
            }
            Err(text) => {
                out.assert_err(text);
                assert_eq!(
                    methods,
                    ["POST"],
                    "{post_status}: no GET fallback: {:?}",
                    raw_lines(&requests)
                );
            }
        }
    }
}

// --- f. redirects -------------------------------------------------------------------------------

/// The manifest requests of a registry on 127.0.0.1 (Bearer, as [`bearer_registry`]) are
/// redirected (307) to the same path on `target` once authorised.
async fn redirecting_to(target: SocketAddr) -> Hostile {
    Hostile::start(move |req, me| {
        let authorised = auth_of(req).is_some_and(|a| a == format!("Bearer {}", hostile::TOKEN));
        if authorised && req.path().contains("/manifests/") {
            return Reply::Bytes(hostile::redirect(
                307,
                &format!("http://{target}{}", req.target),
            ));
        }
        bearer_registry(req, me)
    })
    .await
}

/// `request.do` (resolver.go) follows redirects with Go's client; its `CheckRedirect` calls the
/// authorizer for the new URL, which has a handler only for hosts that challenged before
/// (handlers are keyed by `last.Request.URL.Host` in `AddResponses`). Go drops the first host's
/// `Authorization` on a redirect to another host. So: an open redirect target sees no
/// credentials; a target that answers 401 gets its own token (from its own realm) and the
/// whole request is retried from the first host, this time with the target's token on the
/// redirected hop.
#[tokio::test(flavor = "multi_thread")]
async fn redirect_to_another_host_drops_authorization_and_reauthorises_there() {
    if !have_ctr() {
        return;
    }
    let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    // An open target: serves the manifest to anyone.
    let open = Hostile::start_on(other, |req, _| Reply::Bytes(manifest_reply(req))).await;
    let first = redirecting_to(open.addr).await;
    let out = ctr_fetch_async(&format!("{}/app:1", first.addr), &CtrOpts::default()).await;
    out.assert_ok();
    let seen = open.requests();
    assert_eq!(
        raw_lines(&seen),
        [
            "HEAD /v2/app/manifests/1".to_owned(),
            format!("GET /v2/app/manifests/{}", manifest_digest()),
        ]
    );
    assert!(
        seen.iter().all(|r| auth_of(r).is_none()),
        "the first host's token is not forwarded: {seen:?}"
    );

    // A target with its own Bearer auth (its own realm and token).
    let guarded = Hostile::start_on(other, |req, me| {
        if req.path() == "/token" {
            return Reply::Bytes(hostile::json(br#"{"token":"second-host-token"}"#));
        }
        if auth_of(req).as_deref() == Some("Bearer second-host-token") {
            return Reply::Bytes(manifest_reply(req));
        }
        let challenge = format!(r#"Bearer realm="http://{me}/token",service="second""#);
        Reply::Bytes(response(
            401,
            &[("WWW-Authenticate", challenge.as_bytes())],
            b"",
        ))
    })
    .await;
    let first = redirecting_to(guarded.addr).await;
    let out = ctr_fetch_async(&format!("{}/app:1", first.addr), &CtrOpts::default()).await;
    out.assert_ok();
    let seen = guarded.requests();
    let lines: Vec<String> = seen
        .iter()
        .map(|r| format!("{} {} {:?}", r.method, r.path(), auth_of(r)))
        .collect();
    let digest = manifest_digest();
    assert_eq!(
        lines,
        [
            "HEAD /v2/app/manifests/1 None",
            "GET /token None",
            "HEAD /v2/app/manifests/1 Some(\"Bearer second-host-token\")",
            &format!("GET /v2/app/manifests/{digest} None"),
            "GET /token None",
            &format!("GET /v2/app/manifests/{digest} Some(\"Bearer second-host-token\")"),
        ]
    );
    let first_heads = first.count(|r| r.is_manifest_head());
    assert_eq!(
        first_heads,
        3,
        "401, then redirected twice: {:?}",
        raw_lines(&first.requests())
    );
}

// --- g. platforms, through a real pull -----------------------------------------------------------

/// A whole `ctr images pull` through a private daemon: the index is resolved, the platform's
/// manifest, config and layer are fetched and the layer unpacked (native snapshotter). When
/// the index has no manifest for the platform, ctr's fetch (`images.FilterPlatforms`, no
/// limit) succeeds with the index alone and the unpack fails in `images.Manifest`
/// (images/image.go): `no match for platform in manifest <index digest>: not found`.
/// (The CRI plugin pulls through `client.Pull`, whose `images.LimitManifests` fails earlier
/// with `no match for platform in manifest: not found` — same verdict, other text.)
#[tokio::test(flavor = "multi_thread")]
async fn daemon_pull_fetches_the_platform_or_fails_with_no_match() {
    if !have_daemon() {
        return;
    }
    let both = OciImage::index(&["linux/amd64", "linux/arm64/v8"]);
    let arm_only = OciImage::index(&["linux/arm/v7"]);
    let single = OciImage::single("linux/amd64");
    let reg = FakeRegistry::builder()
        .auth(Auth::Bearer {
            user_pass: Some((USER.into(), PASSWORD.into())),
            service: "fake-registry".into(),
        })
        .image("team/app", "multi", both.clone())
        .image("team/app", "arm", arm_only.clone())
        .image("team/app", "single", single.clone())
        .start()
        .await;
    let daemon = tokio::task::spawn_blocking(Containerd::start)
        .await
        .unwrap();
    let host = format!("127.0.0.1:{}", reg.addr.port());
    let user = CtrOpts::default().user(USER, PASSWORD);

    let out = daemon
        .pull_async(
            &format!("{host}/team/app:multi"),
            &user,
            Some("linux/arm64"),
        )
        .await;
    out.assert_ok();
    assert!(
        out.stdout
            .contains(&format!("unpacking linux/arm64 {}", both.digest)),
        "{out}"
    );
    let arm64 = both.manifest_digest("linux/arm64/v8").unwrap();
    let paths = registry_lines(&reg.requests());
    assert!(
        paths.contains(&format!("GET /v2/team/app/manifests/{arm64}")),
        "{paths:?}"
    );
    let amd64 = both.manifest_digest("linux/amd64").unwrap();
    assert!(
        !paths.iter().any(|p| p.ends_with(amd64)),
        "only the chosen platform is fetched: {paths:?}"
    );
    assert!(
        paths.iter().filter(|p| p.contains("/blobs/")).count() == 2,
        "config and layer: {paths:?}"
    );

    daemon
        .pull_async(
            &format!("{host}/team/app:single"),
            &user,
            Some("linux/amd64"),
        )
        .await
        .assert_ok();

    let out = daemon
        .pull_async(&format!("{host}/team/app:arm"), &user, Some("linux/amd64"))
        .await;
    out.assert_err(&format!(
        "no match for platform in manifest {}: not found",
        arm_only.digest
    ));
    // Without credentials the pull fails at resolve, though the index is in the content store.
    let out = daemon
        .pull_async(&format!("{host}/team/app:multi"), &CtrOpts::default(), None)
        .await;
    out.assert_err(&format!(
        "failed to resolve reference \"{host}/team/app:multi\": failed to authorize: \
         failed to fetch anonymous token: unexpected status: 401 Unauthorized"
    ));
    // ctr registered the image whose unpack failed (its fetch, of the index alone, worked).
    let listed = tokio::task::spawn_blocking(move || {
        let out = daemon.ctr(&["images", "ls", "-q"]);
        drop(daemon);
        out
    })
    .await
    .unwrap();
    listed.assert_ok();
    let refs: Vec<&str> = listed.stdout.lines().collect();
    assert_eq!(
        refs,
        [
            format!("{host}/team/app:arm"),
            format!("{host}/team/app:multi"),
            format!("{host}/team/app:single"),
        ],
        "{listed}"
    );
}

// --- h. TLS with a CA from hosts.toml --------------------------------------------------------

/// The Docker documentation's recipe for a self-signed registry certificate (`openssl req
/// -x509 -newkey … -addext subjectAltName=…`): a self-signed leaf that OpenSSL marks
/// `CA:TRUE` (its `v3_ca` default). Here with an IP SAN, so no DNS is needed. PEM cert and key.
fn docker_recipe_cert(dir: &std::path::Path) -> Option<(String, String)> {
    require_tool("openssl")?;
    let (crt, key) = (dir.join("domain.crt"), dir.join("domain.key"));
    let status = std::process::Command::new("openssl")
        .args(["req", "-newkey", "rsa:2048", "-nodes", "-sha256", "-keyout"])
        .arg(&key)
        .args([
            "-addext",
            "subjectAltName = IP:127.0.0.1",
            "-x509",
            "-days",
            "365",
            "-subj",
            "/CN=myregistry.test",
            "-out",
        ])
        .arg(&crt)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "openssl req");
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&crt)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("CA:TRUE"),
        "the recipe's certificate is a CA"
    );
    Some((
        std::fs::read_to_string(crt).unwrap(),
        std::fs::read_to_string(key).unwrap(),
    ))
}

fn rustls_config(cert_pem: &str, key_pem: &str) -> Arc<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A CA whose validity ended yesterday and a currently valid leaf for 127.0.0.1 it signed:
/// (CA PEM, server config presenting leaf + CA).
fn expired_ca_and_leaf() -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let now = rcgen::date_time_ymd(1970, 1, 1)
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
    let day = std::time::Duration::from_secs(86_400);
    let mut ca = CertificateParams::default();
    (ca.not_before, ca.not_after) = (now - 365 * day, now - day);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "expired CA");
    let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    (leaf.not_before, leaf.not_after) = (now - day, now + 30 * day);
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let chain = format!("{}{}", cert.pem(), issuer.pem());
    (issuer.pem(), rustls_config(&chain, &key.serialize_pem()))
}

/// A hosts.toml that sends every request for its namespace to `endpoint` (an `https://IP:port`)
/// with `ca` as the extra root, and never to the namespace's own name: a `[host]` entry
/// (containerd 1.6 rejects a file without one) and the same endpoint as `server` (else the
/// namespace itself would be the last host tried, and looked up in DNS).
fn endpoint_toml(endpoint: &str, ca: Option<&std::path::Path>) -> String {
    let ca = ca.map_or_else(String::new, |p| format!("ca = \"{}\"\n", p.display()));
    format!("server = \"{endpoint}\"\n{ca}[host.\"{endpoint}\"]\n{ca}")
}

/// TLS to a registry that is not the image's host: the image is `myregistry.test/app:1`, and
/// its hosts.toml sends it to `https://127.0.0.1:PORT` with `ca = "…"` ([`endpoint_toml`]) —
/// no DNS, no /etc/hosts: the name is only the namespace (sent as `?ns=myregistry.test`), the
/// endpoint is an IP literal matched against the certificate's IP SAN. `ConfigureHosts` appends the `ca`
/// file to the system pool (`rootSystemPool`) and Go's `crypto/x509` verifies:
/// - the Docker-recipe self-signed `CA:TRUE` certificate, trusted as its own root: ok;
/// - without `ca`: `x509: certificate signed by unknown authority`;
/// - a valid leaf under an expired CA given as `ca`: Go checks the root's validity too:
///   `x509: certificate has expired or is not yet valid`;
/// - `--tlscacert` alone does the same job as `ca` for an https host entry.
#[tokio::test(flavor = "multi_thread")]
async fn tls_ca_from_hosts_toml_docker_recipe_and_expired_ca() {
    if !have_ctr() {
        return;
    }
    pullprobe::install_crypto_provider();
    let scratch = tempfile::tempdir().unwrap();
    let Some((cert, key)) = docker_recipe_cert(scratch.path()) else {
        return;
    };
    let reg = FakeRegistry::builder()
        .tls(rustls_config(&cert, &key))
        .repo("app", &["1"])
        .start()
        .await;
    let server = format!("https://127.0.0.1:{}", reg.addr.port());
    let hosts = HostsDir::new();
    let ca = hosts.file("myregistry.test", "domain.crt", cert.as_bytes());
    hosts.hosts_toml("myregistry.test", &endpoint_toml(&server, Some(&ca)));
    let opts = CtrOpts::default().hosts_dir(hosts.path());
    ctr_fetch_async("myregistry.test/app:1", &opts)
        .await
        .assert_ok();
    assert_eq!(
        registry_lines(&reg.requests())[0],
        "HEAD /v2/app/manifests/1?ns=myregistry.test"
    );

    hosts.hosts_toml("myregistry.test", &endpoint_toml(&server, None));
    ctr_fetch_async("myregistry.test/app:1", &opts)
        .await
        .assert_err("x509: certificate signed by unknown authority");
    // The same CA through --tlscacert (ctr's DefaultTLS.RootCAs) instead of `ca`.
    ctr_fetch_async("myregistry.test/app:1", &opts.clone().tlscacert(&ca))
        .await
        .assert_ok();

    let (expired_ca, config) = expired_ca_and_leaf();
    let expired = FakeRegistry::builder()
        .tls(config)
        .repo("app", &["1"])
        .start()
        .await;
    let ca = hosts.file("expired.test", "ca.crt", expired_ca.as_bytes());
    let endpoint = format!("https://127.0.0.1:{}", expired.addr.port());
    hosts.hosts_toml("expired.test", &endpoint_toml(&endpoint, Some(&ca)));
    ctr_fetch_async("expired.test/app:1", &opts)
        .await
        .assert_err("x509: certificate has expired or is not yet valid");
}

// --- the harness itself ----------------------------------------------------------------------

/// A registry that accepts the connection and never answers: ctr 1.6 has no response timeout
/// of its own (`ConfigureHosts` sets dial and TLS-handshake timeouts only), so the harness's
/// hard timeout kills it.
#[tokio::test(flavor = "multi_thread")]
async fn harness_kills_a_ctr_that_hangs() {
    if !have_ctr() {
        return;
    }
    let (addr, _guard) = crate::support::silent_listener().await;
    let opts = CtrOpts::default().timeout(std::time::Duration::from_millis(1500));
    let out = ctr_fetch_async(&format!("{addr}/app:1"), &opts).await;
    assert!(out.timed_out && !out.ok && out.code.is_none(), "{out}");
    assert!(out.elapsed < std::time::Duration::from_secs(5), "{out}");
}
