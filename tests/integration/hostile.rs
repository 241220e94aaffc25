//! The real engine against hostile and broken servers (`support::hostile`): trickled, endless,
//! oversized and malformed answers, redirect loops, resets mid-handshake, garbage headers and
//! oversized DNS answers. Every case must end in a bounded probe (well inside the config's
//! timeout plus one second) with an exact phase and reason, and without a panic.
//!
//! The soak test at the end (`cargo test --release --test integration soak -- --ignored`)
//! runs thousands of probe rounds and checks that the process's memory stays flat.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use pullprobe::config::Config;
use pullprobe::outcome::{Phase, Reason};
use pullprobe::probe::{MAX_HEAD_BYTES, MAX_REDIRECTS, MAX_TOKEN_BODY, ProbeReport, Prober};

use crate::support::dns::{DnsBehavior, FakeDns};
use crate::support::hostile::{
    DIGEST, Hostile, RawRequest, Reply, TOKEN, challenge_for, healthy, json, manifest_ok, redirect,
    response,
};
use crate::support::init;
use crate::support::tls::{TestCa, TlsResetAfterHello, Validity, server_config};

const REPO: &str = "library/alpine";
/// The probe timeout of every case here.
const TIMEOUT: Duration = Duration::from_secs(2);

fn image_at(addr: SocketAddr) -> String {
    format!("{}:{}/{REPO}:latest", addr.ip(), addr.port())
}

async fn probe_yaml(yaml: &str) -> ProbeReport {
    init();
    let config = Config::from_yaml("hostile.yaml", yaml, Path::new("/nonexistent"))
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(config.timeout, TIMEOUT);
    Prober::from_config(&config).probe(&config.targets[0]).await
}

/// Probes the image on `addr` over plain HTTP with the 2 s timeout.
async fn probe(addr: SocketAddr) -> ProbeReport {
    probe_yaml(&format!(
        "timeout: 2s\ntargets:\n  - image: {}\n    plain_http: true\n",
        image_at(addr)
    ))
    .await
}

#[track_caller]
fn assert_bounded(r: &ProbeReport) {
    assert!(
        r.duration < TIMEOUT + Duration::from_secs(1),
        "the probe took {:?}: {:#?}",
        r.duration,
        r.failure
    );
}

#[track_caller]
fn assert_failure(r: &ProbeReport, phase: Phase, reason: Reason) {
    assert_bounded(r);
    let got = r.failure.as_ref().map(|f| (f.phase, f.reason));
    assert_eq!(got, Some((phase, reason)), "{:#?}", r.failure);
}

#[track_caller]
fn assert_ok(r: &ProbeReport) {
    assert_bounded(r);
    assert!(r.ok(), "{:#?}", r.failure);
}

/// Splits an HTTP message into its head (through the blank line) and its body.
fn split_head(message: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head")
        + 4;
    (message[..end].to_vec(), message[end..].to_vec())
}

/// A server that answers `path` with `reply(request, own address)` and is healthy otherwise.
async fn breaking(
    path: &'static str,
    reply: impl Fn(&RawRequest, SocketAddr) -> Reply + Send + Sync + 'static,
) -> Hostile {
    Hostile::start(move |req, me| {
        if req.path() == path {
            reply(req, me)
        } else {
            healthy(req, me)
        }
    })
    .await
}

const MANIFEST_PATH: &str = "/v2/library/alpine/manifests/latest";

#[tokio::test]
async fn the_hostile_server_itself_is_a_working_registry() {
    let s = Hostile::start(healthy).await;
    let r = probe(s.addr).await;
    assert_ok(&r);
    assert_eq!(r.digest.as_deref(), Some(DIGEST));
    let paths: Vec<String> = s.requests().iter().map(|q| q.path().to_owned()).collect();
    // containerd's resolver: no `/v2/` ping; the manifest HEAD, its 401, the token, the retry.
    assert_eq!(paths, [MANIFEST_PATH, "/token", MANIFEST_PATH]);
}

#[tokio::test]
async fn a_second_probe_with_the_cached_token_is_one_request() {
    let s = Hostile::start(healthy).await;
    init();
    let yaml = format!(
        "timeout: 2s\ntargets:\n  - image: {}\n    plain_http: true\n",
        image_at(s.addr)
    );
    let config = Config::from_yaml("hostile.yaml", &yaml, Path::new("/nonexistent")).unwrap();
    let prober = Prober::from_config(&config);
    assert_ok(&prober.probe(&config.targets[0]).await);
    s.forget_requests();
    let r = prober.probe(&config.targets[0]).await;
    assert_ok(&r);
    let paths: Vec<String> = s.requests().iter().map(|q| q.path().to_owned()).collect();
    assert_eq!(paths, [MANIFEST_PATH]);
    let phases: Vec<Phase> = r.phases.iter().map(|p| p.phase).collect();
    assert_eq!(
        phases,
        [Phase::Connect, Phase::Manifest],
        "no auth phase with a cached token"
    );
}

// ---- 1. trickling servers ------------------------------------------------------------------

#[tokio::test]
async fn a_trickled_401_challenge_times_out_in_manifest() {
    // The 401 answers the manifest HEAD: the phase is the request's, `auth` starts with it.
    let s = breaking(MANIFEST_PATH, |_, me| Reply::Trickle {
        at_once: Vec::new(),
        trickled: response(
            401,
            &[("WWW-Authenticate", challenge_for(me).as_bytes())],
            b"",
        ),
        every: Duration::from_secs(1),
    })
    .await;
    assert_failure(&probe(s.addr).await, Phase::Manifest, Reason::Timeout);
}

#[tokio::test]
async fn a_token_body_trickled_one_byte_per_second_times_out_in_auth() {
    let s = breaking("/token", |_, _| {
        let (head, body) = split_head(&json(format!(r#"{{"token":"{TOKEN}"}}"#).as_bytes()));
        Reply::Trickle {
            at_once: head,
            trickled: body,
            every: Duration::from_secs(1),
        }
    })
    .await;
    assert_failure(&probe(s.addr).await, Phase::Auth, Reason::Timeout);
}

#[tokio::test]
async fn a_trickled_manifest_answer_times_out_in_manifest() {
    let s = breaking(MANIFEST_PATH, |_, _| Reply::Trickle {
        at_once: Vec::new(),
        trickled: manifest_ok(&[]),
        every: Duration::from_secs(1),
    })
    .await;
    assert_failure(&probe(s.addr).await, Phase::Manifest, Reason::Timeout);
}

// ---- 2. oversized response heads -----------------------------------------------------------

#[tokio::test]
async fn a_one_mebibyte_header_line_is_a_protocol_error_not_a_buffer() {
    let s = breaking(MANIFEST_PATH, |_, _| {
        Reply::Bytes(response(
            200,
            &[("X-Huge", &vec![b'a'; 1 << 20][..])],
            b"{}",
        ))
    })
    .await;
    let r = probe(s.addr).await;
    assert_failure(&r, Phase::Manifest, Reason::ProtocolError);
    assert!(
        r.duration < Duration::from_secs(1),
        "refused as it arrives: {:?}",
        r.duration
    );
    assert!(
        r.failure
            .unwrap()
            .message
            .contains("no valid HTTP response"),
        "the message names the cause"
    );
}

#[tokio::test]
async fn too_many_headers_are_a_protocol_error_and_a_large_head_under_the_limit_works() {
    let many: Vec<(String, Vec<u8>)> = (0..1000)
        .map(|i| (format!("X-Header-{i}"), b"v".to_vec()))
        .collect();
    let s = breaking(MANIFEST_PATH, move |_, _| {
        let headers: Vec<(&str, &[u8])> = many
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        Reply::Bytes(response(200, &headers, b"{}"))
    })
    .await;
    assert_failure(&probe(s.addr).await, Phase::Manifest, Reason::ProtocolError);

    // Half the head limit in one header is unusual but valid.
    let s = breaking(MANIFEST_PATH, |req, me| {
        if req.header("authorization").is_some() {
            return healthy(req, me);
        }
        let challenge = challenge_for(me);
        Reply::Bytes(response(
            401,
            &[
                ("WWW-Authenticate", challenge.as_bytes()),
                ("X-Large", &vec![b'a'; MAX_HEAD_BYTES / 2][..]),
            ],
            b"",
        ))
    })
    .await;
    assert_ok(&probe(s.addr).await);
}

// ---- 3. endless token bodies -----------------------------------------------------------------

#[tokio::test]
async fn an_endless_token_body_is_capped_and_fails_fast() {
    let heads: [&[u8]; 3] = [
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n",
    ];
    for (i, head) in heads.into_iter().enumerate() {
        let chunked = i == 0;
        let s = breaking("/token", move |_, _| {
            let data = vec![b' '; 16 * 1024];
            let chunk = if chunked {
                [format!("{:x}\r\n", data.len()).as_bytes(), &data, b"\r\n"].concat()
            } else {
                data
            };
            Reply::Endless {
                head: head.to_vec(),
                chunk,
            }
        })
        .await;
        let r = probe(s.addr).await;
        assert_failure(&r, Phase::Auth, Reason::ProtocolError);
        assert!(
            r.duration < Duration::from_secs(1),
            "case {i}: the cap ends the read, not the deadline: {:?}",
            r.duration
        );
        let msg = r.failure.unwrap().message;
        assert!(msg.contains("larger than"), "case {i}: {msg}");
    }
}

// ---- 4. huge, nested and broken token JSON ---------------------------------------------------

/// Token JSON of exactly `len` bytes: a token and padding.
fn token_json_of_len(len: usize) -> Vec<u8> {
    let prefix = format!(r#"{{"token":"{TOKEN}","padding":""#);
    let pad = len - prefix.len() - 2;
    [prefix.as_bytes(), &vec![b'x'; pad], b"\"}"].concat()
}

#[tokio::test]
async fn token_json_at_the_cap_works_and_one_byte_over_is_refused() {
    for (len, ok) in [(MAX_TOKEN_BODY, true), (MAX_TOKEN_BODY + 1, false)] {
        let body = token_json_of_len(len);
        assert_eq!(body.len(), len);
        assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok());
        let s = breaking("/token", move |_, _| Reply::Bytes(json(&body))).await;
        let r = probe(s.addr).await;
        if ok {
            assert_ok(&r);
        } else {
            assert_failure(&r, Phase::Auth, Reason::ProtocolError);
        }
    }
}

#[tokio::test]
async fn nested_broken_and_mistyped_token_json_is_a_protocol_error() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("100 000 [", vec![b'['; 100_000]),
        ("50 000 {\"a\":", b"{\"a\":".repeat(50_000)),
        (
            "nested under the token",
            [
                b"{\"token\":".as_slice(),
                &vec![b'['; 50_000],
                &vec![b']'; 50_000],
                b"}",
            ]
            .concat(),
        ),
        ("binary", b"\xff\xfe\x00\x01not json at all\x00".to_vec()),
        ("empty", Vec::new()),
        ("html", b"<html><body>Login</body></html>".to_vec()),
        ("number token", br#"{"token": 42}"#.to_vec()),
        (
            "null token",
            br#"{"token": null, "access_token": ""}"#.to_vec(),
        ),
        ("array", br#"["token"]"#.to_vec()),
        ("array of fields", br#"  [null, "tok", 300]"#.to_vec()),
        ("truncated", br#"{"token":"abc"#.to_vec()),
    ];
    for (name, body) in cases {
        let s = breaking("/token", move |_, _| Reply::Bytes(json(&body))).await;
        let r = probe(s.addr).await;
        assert_bounded(&r);
        let got = r.failure.as_ref().map(|f| (f.phase, f.reason));
        assert_eq!(
            got,
            Some((Phase::Auth, Reason::ProtocolError)),
            "{name}: {:#?}",
            r.failure
        );
        assert!(
            r.failure.as_ref().unwrap().message.contains("token"),
            "{name}: {:#?}",
            r.failure
        );
    }
}

#[tokio::test]
async fn odd_but_valid_token_lifetimes_are_accepted() {
    for expires in ["-5", "0", "9223372036854775807", "1"] {
        let body = format!(r#"{{"token":"{TOKEN}","expires_in":{expires}}}"#);
        let s = breaking("/token", move |_, _| Reply::Bytes(json(body.as_bytes()))).await;
        assert_ok(&probe(s.addr).await);
    }
}

#[tokio::test]
async fn a_token_that_cannot_be_sent_in_a_header_is_a_protocol_error_in_auth() {
    // JSON escapes make control characters; such a token cannot become an Authorization header.
    for token in [r"abc\r\nX-Injected: 1", r"abc\u0000def", r"tab\tok\u007f"] {
        let body = format!(r#"{{"token":"{token}"}}"#);
        let s = breaking("/token", move |_, _| Reply::Bytes(json(body.as_bytes()))).await;
        let r = probe(s.addr).await;
        assert_failure(&r, Phase::Auth, Reason::ProtocolError);
        assert_eq!(
            s.count(RawRequest::is_manifest_head),
            1,
            "{token}: the manifest is not asked again without the token"
        );
    }
}

// ---- 5. redirects ------------------------------------------------------------------------------

#[tokio::test]
async fn a_manifest_redirect_loop_stops_after_the_limit() {
    let s = breaking(MANIFEST_PATH, |_, _| {
        Reply::Bytes(redirect(307, MANIFEST_PATH))
    })
    .await;
    let r = probe(s.addr).await;
    assert_failure(&r, Phase::Manifest, Reason::ProtocolError);
    assert!(r.failure.unwrap().message.contains("redirects"));
    assert_eq!(s.count(RawRequest::is_manifest_head), MAX_REDIRECTS + 1);
}

#[tokio::test]
async fn a_token_redirect_loop_stops_after_the_limit() {
    // Each hop points to a new URL (a growing query), as a misconfigured proxy would.
    let s = breaking("/token", |req, _| {
        Reply::Bytes(redirect(302, &format!("{}&again=1", req.target)))
    })
    .await;
    let r = probe(s.addr).await;
    assert_failure(&r, Phase::Auth, Reason::ProtocolError);
    assert_eq!(s.count(|q| q.path() == "/token"), MAX_REDIRECTS + 1);
}

#[tokio::test]
async fn a_redirected_token_realm_is_followed() {
    let real = Hostile::start(healthy).await;
    let real_addr = real.addr;
    let s = Hostile::start(move |req, me| match req.path() {
        MANIFEST_PATH if req.header("authorization").is_none() => Reply::Bytes(response(
            401,
            &[(
                "WWW-Authenticate",
                format!(r#"Bearer realm="http://{me}/auth",service="hostile""#).as_bytes(),
            )],
            b"",
        )),
        "/auth" => {
            let query = req.target.split_once('?').map_or("", |(_, q)| q);
            Reply::Bytes(redirect(307, &format!("http://{real_addr}/token?{query}")))
        }
        _ => healthy(req, me),
    })
    .await;
    assert_ok(&probe(s.addr).await);
    let token_requests: Vec<RawRequest> = real
        .requests()
        .into_iter()
        .filter(|q| q.path() == "/token")
        .collect();
    assert_eq!(token_requests.len(), 1);
    assert!(
        token_requests[0]
            .target
            .contains("scope=repository%3Alibrary%2Falpine%3Apull"),
        "the query survives the redirect: {}",
        token_requests[0].target
    );
}

/// A healthy registry whose authorised manifest HEAD is redirected (307) to a second server on
/// `ip` that serves the manifest without asking for credentials. Returns both.
async fn redirecting_to(ip: IpAddr) -> (Hostile, Hostile) {
    let other = Hostile::start_on(ip, |req, _| {
        Reply::Bytes(if req.is_manifest_head() {
            manifest_ok(&[])
        } else {
            response(404, &[], b"")
        })
    })
    .await;
    let other_addr = other.addr;
    let s = breaking(MANIFEST_PATH, move |req, me| {
        if req.header("authorization").is_none() {
            return healthy(req, me);
        }
        Reply::Bytes(redirect(
            307,
            &format!("http://{other_addr}/v2/library/alpine/manifests/elsewhere"),
        ))
    })
    .await;
    (s, other)
}

#[tokio::test]
async fn a_manifest_redirect_to_another_host_is_followed_without_the_token() {
    // The other host (a CDN, a mirror) answers without asking for credentials. Go's client
    // drops `Authorization` on a redirect to another host name (`shouldCopyHeaderOnRedirect`).
    let (s, other) = redirecting_to("127.0.0.2".parse().unwrap()).await;
    let r = probe(s.addr).await;
    assert_ok(&r);
    assert_eq!(r.digest.as_deref(), Some(DIGEST));
    let seen = other.requests();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].is_manifest_head());
    assert_eq!(
        seen[0].header("authorization"),
        None,
        "Authorization must not be forwarded to another host"
    );
    let heads: Vec<RawRequest> = s
        .requests()
        .into_iter()
        .filter(RawRequest::is_manifest_head)
        .collect();
    assert_eq!(
        heads.last().unwrap().header("authorization"),
        Some(format!("Bearer {TOKEN}").as_bytes()),
        "the registry itself got the token"
    );
}

#[tokio::test]
async fn a_manifest_redirect_to_another_port_of_the_same_host_keeps_the_token() {
    // Go compares host names without ports (`idnaASCIIFromURL`): same host, token kept.
    let (s, other) = redirecting_to("127.0.0.1".parse().unwrap()).await;
    assert_ok(&probe(s.addr).await);
    let seen = other.requests();
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_bytes())
    );
}

#[tokio::test]
async fn a_manifest_redirect_on_the_same_origin_keeps_the_token() {
    let s = breaking(MANIFEST_PATH, |_, _| {
        Reply::Bytes(redirect(308, "/v2/library/alpine/manifests/moved"))
    })
    .await;
    let r = probe(s.addr).await;
    assert_ok(&r);
    // The first HEAD has no token yet: its redirect answers 401, the token is fetched, and the
    // HEAD is sent again; that second redirect carries the token.
    let moved = s
        .requests()
        .into_iter()
        .rfind(|q| q.path().ends_with("/moved"))
        .expect("the redirect was followed");
    assert_eq!(
        moved.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_bytes())
    );
}

#[tokio::test]
async fn unusable_redirects_are_protocol_errors() {
    let locations: [&[u8]; 5] = [
        b"",
        b"\xff\xfe",
        b"file:///etc/passwd",
        b"ftp://127.0.0.1:1/x",
        b"http://[::1",
    ];
    for location in locations {
        let s = breaking(MANIFEST_PATH, move |_, _| {
            let headers: &[(&str, &[u8])] = if location.is_empty() {
                &[]
            } else {
                &[("Location", location)]
            };
            Reply::Bytes(response(307, headers, b""))
        })
        .await;
        let r = probe(s.addr).await;
        assert_failure(&r, Phase::Manifest, Reason::ProtocolError);
    }
}

// ---- 6. resets in the middle of the TLS handshake --------------------------------------------

#[tokio::test]
async fn a_reset_after_the_server_hello_is_a_tls_handshake_failure() {
    let ca = TestCa::new("pullprobe hostile CA");
    let server =
        TlsResetAfterHello::start(server_config(&ca.leaf(&["127.0.0.1"], Validity::Valid))).await;
    let dir = tempfile::tempdir().unwrap();
    let r = probe_yaml(&format!(
        "timeout: 2s\ntargets:\n  - image: {}\n    tls:\n      ca_file: {}\n",
        image_at(server.addr),
        ca.write_ca_pem(dir.path()).display()
    ))
    .await;
    assert_failure(&r, Phase::Tls, Reason::TlsHandshake);
    let tls = r
        .tls
        .expect("a TLS report even when the handshake broke off");
    assert_eq!(tls.version, None);
}

// ---- 7. garbage in headers ---------------------------------------------------------------------

#[tokio::test]
async fn unusable_challenges_fail_as_they_do_for_containerd() {
    // containerd reads these leniently (auth/parse.go) and then fails: a realm that is not an
    // http(s) URL cannot be asked, a line that is no challenge at all leaves the 401 standing.
    // A realm with a non-ASCII byte is a URL Go accepts, so the token request is really sent
    // (and refused here: nothing listens on port 1). Control characters break the response
    // head itself (Go's and hyper's header parsers both refuse them), in the manifest request.
    let challenges: [(&[u8], Phase, Reason); 7] = [
        (
            b"Bearer realm=\"http://127.0.0.1:1/t\xff\"",
            Phase::Auth,
            Reason::ConnectRefused,
        ),
        (
            b"Bearer realm=\"http://127.0.0.1:1/t\x01\"",
            Phase::Manifest,
            Reason::ProtocolError,
        ),
        (
            b"Bearer realm=\"http://127.0.0.1:1/t\x7f\"",
            Phase::Manifest,
            Reason::ProtocolError,
        ),
        (
            b"Bearer realm=\"not a url\",service=\"x\"",
            Phase::Auth,
            Reason::ProtocolError,
        ),
        (
            b"Bearer realm=\"ftp://127.0.0.1/token\"",
            Phase::Auth,
            Reason::ProtocolError,
        ),
        (
            b"Bearer realm=\"\",service=\"x\"",
            Phase::Auth,
            Reason::ProtocolError,
        ),
        (b"\x80\x81\x82", Phase::Auth, Reason::ProtocolError),
    ];
    for (challenge, phase, reason) in challenges {
        let s = breaking(MANIFEST_PATH, move |_, _| {
            Reply::Bytes(response(401, &[("WWW-Authenticate", challenge)], b""))
        })
        .await;
        let r = probe(s.addr).await;
        assert_failure(&r, phase, reason);
    }
}

#[tokio::test]
async fn garbage_in_optional_headers_is_ignored_and_never_reported() {
    let cases: [(&str, &[u8]); 5] = [
        ("ratelimit-limit", b"100\xff;w=21600"),
        ("ratelimit-limit", b"99999999999999999999999;w=1"),
        ("ratelimit-remaining", b"\x80;w=\x81"),
        ("docker-ratelimit-source", b"\xff\xfe<b>"),
        ("docker-ratelimit-source", b"a b c"),
    ];
    for (name, value) in cases {
        let s = breaking(MANIFEST_PATH, move |req, me| {
            if req.header("authorization").is_none() {
                return healthy(req, me);
            }
            let mut extra: Vec<(&str, &[u8])> = vec![
                ("ratelimit-limit", b"100;w=21600"),
                ("ratelimit-remaining", b"42;w=21600"),
                ("docker-ratelimit-source", b"192.0.2.1"),
            ];
            extra.retain(|(n, _)| *n != name);
            extra.push((name, value));
            Reply::Bytes(manifest_ok(&extra))
        })
        .await;
        let r = probe(s.addr).await;
        assert_ok(&r);
        let shown = format!("{name}: {}", String::from_utf8_lossy(value));
        assert_eq!(r.digest.as_deref(), Some(DIGEST), "{shown}");
        match name {
            "docker-ratelimit-source" => {
                let rl = r.rate_limit.expect("limit and remaining are fine");
                assert_eq!(
                    (rl.limit, rl.remaining, rl.source),
                    (100, 42, None),
                    "{shown}"
                );
            }
            _ => assert_eq!(r.rate_limit, None, "{shown}"),
        }
    }
}

#[tokio::test]
async fn a_garbage_digest_header_fails_as_containerd_refuses_it_and_is_never_reported() {
    // containerd `Resolve`: a Docker-Content-Digest that does not validate (go-digest
    // `Digest.Validate`) fails the resolve; pullprobe must not call that image pullable.
    let cases: [&[u8]; 4] = [
        b"sha256:\xff\xfe",
        b"sha256:<script>alert(1)</script>",
        b"../../../etc/passwd",
        b"sha256:ABCDEF",
    ];
    for value in cases {
        let s = breaking(MANIFEST_PATH, move |req, me| {
            if req.header("authorization").is_none() {
                return healthy(req, me);
            }
            let mut answer = manifest_ok(&[]);
            let good = format!("Docker-Content-Digest: {DIGEST}");
            let at = answer
                .windows(good.len())
                .position(|w| w == good.as_bytes())
                .unwrap();
            answer.splice(
                at..at + good.len(),
                [b"Docker-Content-Digest: ".as_slice(), value].concat(),
            );
            Reply::Bytes(answer)
        })
        .await;
        let r = probe(s.addr).await;
        assert_failure(&r, Phase::Manifest, Reason::ProtocolError);
        assert_eq!(r.digest, None);
        let msg = r.failure.unwrap().message;
        assert!(msg.contains("not a valid digest"), "{msg}");
        assert!(!msg.contains("script") && !msg.contains("passwd"), "{msg}");
    }
}

#[tokio::test]
async fn heads_that_are_not_http_are_protocol_errors() {
    let answers: [&[u8]; 5] = [
        b"HTTP/1.1 200 OK\r\nDocker-Content-Digest: sha256:ab\x01cd\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad\xffName: x\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nratelimit-limit: 1\x00\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 9999 Whatever\r\nContent-Length: 0\r\n\r\n",
        b"\x00\x01\x02\x03\r\n\r\n",
    ];
    for answer in answers {
        let s = breaking(MANIFEST_PATH, move |req, me| {
            if req.header("authorization").is_none() {
                return healthy(req, me);
            }
            Reply::BytesThenClose(answer.to_vec())
        })
        .await;
        let r = probe(s.addr).await;
        assert_failure(&r, Phase::Manifest, Reason::ProtocolError);
        assert_eq!(r.digest, None);
    }
}

// ---- 8. oversized and truncated DNS answers --------------------------------------------------

#[tokio::test]
async fn hundreds_of_dns_records_and_a_truncated_answer_still_reach_the_registry() {
    // `Many(300)` answers 127.0.0.1 … 127.0.1.44: put the registry on the last one, so the
    // probe has to walk past 299 refusing addresses (and the answer needs the TCP fallback).
    let last: IpAddr = "127.0.1.44".parse().unwrap();
    let far = Hostile::start_on(last, healthy).await;
    let near = Hostile::start(healthy).await;
    let dns = FakeDns::start(vec![
        ("many.test", DnsBehavior::Many(300)),
        (
            "truncated.test",
            DnsBehavior::Truncate(vec!["127.0.0.1".parse().unwrap()]),
        ),
    ])
    .await;
    let yaml = |name: &str, port: u16| {
        format!(
            "timeout: 2s\ndns:\n  nameservers: [\"{}\"]\ntargets:\n  - image: {name}:{port}/{REPO}:latest\n    plain_http: true\n",
            dns.addr
        )
    };
    let r = probe_yaml(&yaml("many.test", far.addr.port())).await;
    assert_ok(&r);
    assert_eq!(r.address, Some(far.addr), "the one address that listens");
    assert_eq!(r.digest.as_deref(), Some(DIGEST));

    let r = probe_yaml(&yaml("truncated.test", near.addr.port())).await;
    assert_ok(&r);
    assert_eq!(r.address, Some(near.addr));
    assert!(r.phase_duration(Phase::Dns).is_some());
}

// ---- found by fuzzing ------------------------------------------------------------------------

#[tokio::test]
async fn reference_hosts_the_url_standard_refuses_are_dns_errors() {
    // Valid for the reference grammar, not for the URL standard (a numeric last label is an
    // IPv4 address there; `xn--` labels must be valid punycode): reported as dns_error before
    // anything is asked or dialled.
    for host in ["registry.123", "xn--55550.example"] {
        let r = probe_yaml(&format!(
            "timeout: 2s\ntargets:\n  - image: {host}:5000/a/b\n"
        ))
        .await;
        assert_failure(&r, Phase::Dns, Reason::DnsError);
        assert!(r.duration < Duration::from_millis(500), "{:?}", r.duration);
        assert!(r.failure.unwrap().message.contains("not a usable host"));
    }
}

// ---- soak ------------------------------------------------------------------------------------

/// The resident set size of this process, KiB (`VmRSS` in /proc/self/status).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Thousands of probe rounds of one long-lived prober (as the agent keeps one) against healthy
/// and failing fakes: every round must give the same results, and memory must stay flat
/// between round 1 000 and the end. Rounds: `PULLPROBE_SOAK_ROUNDS` (default 5 000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak test: cargo test --release --test integration soak -- --ignored"]
async fn soak_memory_stays_flat_over_thousands_of_probe_rounds() {
    use crate::support::closed_port;
    use crate::support::registry::{Auth, FakeRegistry, RateLimitHeaders, TokenBehavior};

    let rounds: usize = std::env::var("PULLPROBE_SOAK_ROUNDS")
        .ok()
        .map(|v| v.parse().expect("PULLPROBE_SOAK_ROUNDS is a number"))
        .unwrap_or(5000);
    assert!(rounds > 1000, "the comparison starts at round 1 000");
    init();
    let bearer = || Auth::Bearer {
        user_pass: None,
        service: "soak".to_owned(),
    };
    let ca = TestCa::new("pullprobe soak CA");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write_ca_pem(dir.path());
    let leaf = ca.leaf(&["127.0.0.1"], Validity::Valid);

    let healthy_tls = FakeRegistry::builder()
        .tls(server_config(&leaf))
        .auth(bearer())
        .repo(REPO, &["latest"])
        .rate_limit(Some(RateLimitHeaders::hub(42)))
        .start()
        .await;
    let missing_tag = FakeRegistry::builder()
        .auth(bearer())
        .repo(REPO, &["1.0", "1.1"])
        .start()
        .await;
    let token_down = FakeRegistry::builder()
        .auth(bearer())
        .token_behavior(TokenBehavior::Status(503))
        .repo(REPO, &["latest"])
        .start()
        .await;
    let healthy_raw = Hostile::start(healthy).await;
    let garbage = breaking(MANIFEST_PATH, |req, me| {
        if req.header("authorization").is_none() {
            return healthy(req, me);
        }
        Reply::BytesThenClose(b"\x00\x01 not HTTP\r\n\r\n".to_vec())
    })
    .await;
    let endless = breaking("/token", |_, _| Reply::Endless {
        head: b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec(),
        chunk: vec![b' '; 16 * 1024],
    })
    .await;
    let redirect_loop = breaking(MANIFEST_PATH, |_, _| {
        Reply::Bytes(redirect(307, MANIFEST_PATH))
    })
    .await;
    let tls_reset = TlsResetAfterHello::start(server_config(&leaf)).await;
    let closed = closed_port();

    let plain = |name: &str, addr: SocketAddr| {
        format!(
            "  - name: {name}\n    image: {}\n    plain_http: true\n",
            image_at(addr)
        )
    };
    let tls = |name: &str, addr: SocketAddr| {
        format!(
            "  - name: {name}\n    image: {}\n    tls:\n      ca_file: {}\n",
            image_at(addr),
            ca_file.display()
        )
    };
    let yaml = [
        "timeout: 2s\ntargets:\n".to_owned(),
        tls("healthy-tls", healthy_tls.addr),
        plain("healthy-raw", healthy_raw.addr),
        plain("missing-tag", missing_tag.addr),
        plain("token-down", token_down.addr),
        plain("garbage", garbage.addr),
        plain("endless-token", endless.addr),
        plain("redirect-loop", redirect_loop.addr),
        tls("tls-reset", tls_reset.addr),
        plain("refused", closed),
    ]
    .concat();
    let want = [
        (None, Reason::Ok),
        (None, Reason::Ok),
        (Some(Phase::Manifest), Reason::ManifestUnknown),
        (Some(Phase::Auth), Reason::ServerError),
        (Some(Phase::Manifest), Reason::ProtocolError),
        (Some(Phase::Auth), Reason::ProtocolError),
        (Some(Phase::Manifest), Reason::ProtocolError),
        (Some(Phase::Tls), Reason::TlsHandshake),
        (Some(Phase::Connect), Reason::ConnectRefused),
    ];
    let config = Config::from_yaml("soak.yaml", &yaml, dir.path()).unwrap();
    let prober = Prober::from_config(&config);

    let started = tokio::time::Instant::now();
    let mut at_1000 = 0;
    for round in 1..=rounds {
        let reports = pullprobe::check::probe_all(&prober, config.targets.clone()).await;
        let got: Vec<(Option<Phase>, Reason)> =
            reports.iter().map(|r| (r.phase(), r.reason())).collect();
        assert_eq!(got, want, "round {round}");
        for r in &reports {
            assert_bounded(r);
        }
        healthy_tls.forget_requests();
        missing_tag.forget_requests();
        token_down.forget_requests();
        for s in [&healthy_raw, &garbage, &endless, &redirect_loop] {
            s.forget_requests();
        }
        if round == 1000 {
            at_1000 = rss_kib();
            println!("soak: RSS after 1000 rounds: {at_1000} KiB");
        } else if round % 1000 == 0 {
            println!(
                "soak: RSS after {round} rounds: {} KiB ({:?})",
                rss_kib(),
                started.elapsed()
            );
        }
    }
    let end = rss_kib();
    println!(
        "soak: RSS after {rounds} rounds: {end} KiB; {} probes in {:?}",
        rounds * want.len(),
        started.elapsed()
    );
    assert!(
        end * 100 < at_1000 * 120,
        "RSS grew from {at_1000} KiB at round 1000 to {end} KiB at round {rounds}"
    );
}
