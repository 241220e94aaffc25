//! Self-tests for the fakes in [`crate::support`]: each checks, with a real client (hickory,
//! rustls, reqwest), that a fake behaves as the engine tests will assume.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{ResolveHosts, ResolverOpts};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::{Message, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use reqwest::StatusCode;
use rustls_pki_types::ServerName;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::support::dns::{DnsBehavior, FakeDns};
use crate::support::registry::{
    Auth, FakeRegistry, RateLimitHeaders, ServerKind, StatusOverride, TokenBehavior,
};
use crate::support::tls::{Leaf, TestCa, TlsReset, TlsStall, Validity, server_config};
use crate::support::{self, closed_port, silent_listener};

const V4: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7));
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

// ---------------------------------------------------------------- DNS

/// The addresses in a lookup's answers.
fn ips(lookup: Result<Lookup, NetError>) -> Vec<IpAddr> {
    lookup
        .unwrap()
        .answers()
        .iter()
        .filter_map(|r| r.data.ip_addr())
        .collect()
}

fn resolver(dns: &FakeDns) -> TokioResolver {
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.timeout = Duration::from_millis(300);
    opts.attempts = 1;
    opts.use_hosts_file = ResolveHosts::Never;
    Resolver::builder_with_config(dns.resolver_config(), TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .unwrap()
}

#[tokio::test]
async fn dns_answers_each_family_and_does_not_cache() {
    let dns = FakeDns::start(vec![
        ("registry.test", DnsBehavior::Answer(vec![V4, V6])),
        ("v4only.test", DnsBehavior::Answer(vec![V4])),
    ])
    .await;
    let r = resolver(&dns);

    assert_eq!(ips(r.ipv4_lookup("registry.test.").await), [V4]);
    assert_eq!(ips(r.ipv6_lookup("Registry.Test.").await), [V6]);

    // A name with no v6 address: NOERROR with no records, not NXDOMAIN.
    let err = r.ipv6_lookup("v4only.test.").await.unwrap_err();
    assert!(err.is_no_records_found() && !err.is_nx_domain(), "{err:?}");

    let before = dns.queries();
    r.ipv4_lookup("registry.test.").await.unwrap();
    r.ipv4_lookup("registry.test.").await.unwrap();
    assert_eq!(
        dns.queries(),
        before + 2,
        "every lookup must reach the server"
    );
}

#[tokio::test]
async fn dns_error_codes() {
    let dns = FakeDns::start(vec![
        ("nx.test", DnsBehavior::NxDomain),
        ("servfail.test", DnsBehavior::ServFail),
        ("refused.test", DnsBehavior::Refused),
        ("nodata.test", DnsBehavior::NoData),
        ("silent.test", DnsBehavior::Silent),
    ])
    .await;
    let r = resolver(&dns);
    let rcode = |e: &NetError| match e {
        NetError::Dns(DnsError::ResponseCode(code)) => Some(*code),
        _ => None,
    };
    type Check = fn(&NetError) -> bool;
    let cases: [(&str, Check); 6] = [
        ("nx.test.", |e| e.is_nx_domain()),
        ("unknown.test.", |e| e.is_nx_domain()),
        ("servfail.test.", |e| {
            matches!(
                e,
                NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail))
            )
        }),
        ("refused.test.", |e| {
            matches!(
                e,
                NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused))
            )
        }),
        ("nodata.test.", |e| {
            e.is_no_records_found() && !e.is_nx_domain()
        }),
        ("silent.test.", |e| matches!(e, NetError::Timeout)),
    ];
    for (name, check) in cases {
        let err = r.ipv4_lookup(name).await.unwrap_err();
        assert!(
            check(&err),
            "{name}: unexpected {err:?} (rcode {:?})",
            rcode(&err)
        );
    }
}

/// Sends one raw query over UDP and returns the decoded reply.
async fn udp_query(dns: &FakeDns, name: &str) -> Message {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let mut query = Message::query();
    query.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    socket
        .send_to(&query.to_vec().unwrap(), dns.addr)
        .await
        .unwrap();
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let reply = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(reply.metadata.id, query.metadata.id);
    assert_eq!(reply.queries, query.queries, "the question is echoed");
    reply
}

#[tokio::test]
async fn dns_truncation_falls_back_to_tcp() {
    let dns = FakeDns::start(vec![
        ("tc.test", DnsBehavior::Truncate(vec![V4])),
        ("many.test", DnsBehavior::Many(60)),
    ])
    .await;

    let udp = udp_query(&dns, "tc.test.").await;
    assert!(udp.metadata.truncation && udp.answers.is_empty());
    let udp = udp_query(&dns, "many.test.").await;
    assert!(
        udp.metadata.truncation && udp.answers.is_empty(),
        "60 A records exceed 512 bytes"
    );

    let r = resolver(&dns);
    assert_eq!(ips(r.ipv4_lookup("tc.test.").await), [V4]);
    let many = ips(r.ipv4_lookup("many.test.").await);
    assert_eq!(many.len(), 60);
    assert_eq!(many[59], Ipv4Addr::new(127, 0, 0, 60));
}

// ---------------------------------------------------------------- TLS

/// Serves one TLS handshake with `leaf` and returns the client's result for `name`.
async fn handshake(trust: &TestCa, leaf: &Leaf, name: &str) -> Result<(), rustls::Error> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(server_config(leaf));
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let _ = acceptor.accept(tcp).await;
    });
    let connector = TlsConnector::from(Arc::new(trust.client_config()));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    match connector.connect(name, tcp).await {
        Ok(stream) => {
            assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
            Ok(())
        }
        Err(e) => Err(e
            .into_inner()
            .unwrap()
            .downcast::<rustls::Error>()
            .map(|b| *b)
            .unwrap()),
    }
}

#[tokio::test]
async fn tls_certificates_are_accepted_or_rejected_as_built() {
    use rustls::CertificateError as C;
    let ca = TestCa::new("pullprobe test CA");
    let other = TestCa::new("someone else");
    let valid = ca.leaf(&["registry.test", "127.0.0.1"], Validity::Valid);
    type ExpectedErr = fn(&C) -> bool;
    let cases: [(&str, Leaf, &str, ExpectedErr); 6] = [
        (
            "valid by name",
            ca.leaf(&["registry.test"], Validity::Valid),
            "registry.test",
            |_| false,
        ),
        (
            "valid by IP",
            ca.leaf(&["127.0.0.1"], Validity::Valid),
            "127.0.0.1",
            |_| false,
        ),
        (
            "expired",
            ca.leaf(&["registry.test"], Validity::Expired),
            "registry.test",
            |e| matches!(e, C::ExpiredContext { .. }),
        ),
        (
            "not yet valid",
            ca.leaf(&["registry.test"], Validity::NotYetValid),
            "registry.test",
            |e| matches!(e, C::NotValidYetContext { .. }),
        ),
        (
            "wrong name",
            ca.leaf(&["other.test"], Validity::Valid),
            "registry.test",
            |e| matches!(e, C::NotValidForNameContext { .. }),
        ),
        (
            "unknown CA",
            other.leaf(&["registry.test"], Validity::Valid),
            "registry.test",
            |e| matches!(e, C::UnknownIssuer),
        ),
    ];
    for (case, leaf, name, expect_err) in cases {
        match handshake(&ca, &leaf, name).await {
            Ok(()) => assert!(case.starts_with("valid"), "{case}: handshake should fail"),
            Err(rustls::Error::InvalidCertificate(e)) => assert!(expect_err(&e), "{case}: {e:?}"),
            Err(e) => panic!("{case}: unexpected {e:?}"),
        }
    }
    assert!(valid.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(valid.key_pem.contains("PRIVATE KEY"));
    let dir = tempfile::tempdir().unwrap();
    let written = std::fs::read_to_string(ca.write_ca_pem(dir.path())).unwrap();
    assert_eq!(written, ca.ca_pem());
}

#[test]
fn leaf_not_after_is_the_earliest_in_the_chain() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ca = TestCa::new("ca");
    for (validity, lo, hi) in [
        (Validity::Valid, now + 29 * 86_400, now + 31 * 86_400),
        (Validity::Expired, now - 2 * 86_400, now),
        (Validity::NotYetValid, now + 29 * 86_400, now + 31 * 86_400),
    ] {
        let leaf = ca.leaf(&["registry.test"], validity);
        let not_afters: Vec<i64> = leaf
            .chain_der
            .iter()
            .map(|der| {
                let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
                cert.validity().not_after.timestamp()
            })
            .collect();
        assert_eq!(not_afters.len(), 2, "leaf + CA");
        assert!(
            not_afters[1] > now + 365 * 86_400,
            "the CA outlives the leaf"
        );
        assert_eq!(leaf.not_after_unix, *not_afters.iter().min().unwrap());
        assert!((lo..hi).contains(&leaf.not_after_unix), "{validity:?}");
    }
}

#[tokio::test]
async fn broken_endpoints_stall_reset_refuse() {
    let ca = TestCa::new("ca");
    let connector = TlsConnector::from(Arc::new(ca.client_config()));
    let name = || ServerName::try_from("registry.test").unwrap();

    let stall = TlsStall::start().await;
    let tcp = TcpStream::connect(stall.addr).await.unwrap();
    let attempt = tokio::time::timeout(Duration::from_millis(300), connector.connect(name(), tcp));
    assert!(
        attempt.await.is_err(),
        "the stall endpoint must never finish the handshake"
    );

    let reset = TlsReset::start().await;
    let tcp = TcpStream::connect(reset.addr).await.unwrap();
    let err = connector.connect(name(), tcp).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err:?}");

    let (addr, _guard) = silent_listener().await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let read = tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut [0u8; 1])).await;
    assert!(read.is_err(), "the silent listener must not send or close");

    let err = TcpStream::connect(closed_port()).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}

// ---------------------------------------------------------------- registry

/// A reqwest client trusting `ca` (if any) that resolves the given names to loopback.
fn client(ca: Option<&TestCa>, names: &[&str]) -> reqwest::Client {
    support::init();
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5));
    if let Some(ca) = ca {
        builder = builder.tls_backend_preconfigured(ca.client_config());
    }
    for name in names {
        builder = builder.resolve(name, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    }
    builder.build().unwrap()
}

/// The value of `key="…"` in a `WWW-Authenticate` challenge.
fn param<'a>(challenge: &'a str, key: &str) -> Option<&'a str> {
    let start = challenge.find(&format!("{key}=\""))? + key.len() + 2;
    Some(&challenge[start..start + challenge[start..].find('"')?])
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    Some(resp.headers().get(name)?.to_str().unwrap().to_owned())
}

fn hub_rate_limit() -> Option<RateLimitHeaders> {
    Some(RateLimitHeaders::hub(76))
}

/// Fetches a token from the realm in `challenge` for `scope`, optionally with Basic credentials.
async fn fetch_token(
    http: &reqwest::Client,
    challenge: &str,
    scope: &str,
    creds: Option<(&str, &str)>,
) -> reqwest::Response {
    let realm = param(challenge, "realm").unwrap();
    let service = param(challenge, "service").unwrap();
    let url = url::Url::parse_with_params(realm, [("service", service), ("scope", scope)]).unwrap();
    let mut req = http.get(url);
    if let Some((user, pass)) = creds {
        req = req.basic_auth(user, Some(pass));
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn bearer_flow_over_tls_end_to_end() {
    let ca = TestCa::new("ca");
    let leaf = ca.leaf(&["registry.test", "auth.test"], Validity::Valid);
    let reg = FakeRegistry::builder()
        .tls(server_config(&leaf))
        .auth(Auth::Bearer {
            user_pass: None,
            service: "fake-registry".into(),
        })
        .token_realm_host("auth.test")
        .repo("library/alpine", &["3.20", "latest"])
        .rate_limit(hub_rate_limit())
        .start()
        .await;
    let http = client(Some(&ca), &["registry.test", "auth.test"]);
    let base = format!("https://registry.test:{}", reg.addr.port());
    let manifest = format!("{base}/v2/library/alpine/manifests/3.20");

    // 1. Ping: 401 with a Bearer challenge naming the token server.
    let ping = http.get(format!("{base}/v2/")).send().await.unwrap();
    assert_eq!(ping.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&ping, "docker-distribution-api-version").as_deref(),
        Some("registry/2.0")
    );
    let challenge = header(&ping, "www-authenticate").unwrap();
    let realm = format!("https://auth.test:{}/token", reg.token_addr.port());
    assert_eq!(
        challenge,
        format!("Bearer realm=\"{realm}\",service=\"fake-registry\"")
    );

    // 2. Anonymous token for the repository.
    let resp = fetch_token(&http, &challenge, "repository:library/alpine:pull", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    let token = body["token"].as_str().unwrap().to_owned();
    assert_eq!(body["access_token"], body["token"]);
    assert_eq!(body["expires_in"], 300);
    let issued_at = body["issued_at"].as_str().unwrap();
    assert!(
        issued_at.len() == 20 && issued_at.ends_with('Z') && &issued_at[10..11] == "T",
        "{issued_at}"
    );

    // 3. HEAD without the token: challenge with the scope; with it: 200, digest, rate limit.
    let resp = http.head(&manifest).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let scoped = header(&resp, "www-authenticate").unwrap();
    assert_eq!(
        param(&scoped, "scope"),
        Some("repository:library/alpine:pull")
    );
    assert_eq!(param(&scoped, "error"), None);

    let accept = "application/vnd.oci.image.manifest.v1+json, */*";
    let resp = http
        .head(&manifest)
        .bearer_auth(&token)
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let digest = header(&resp, "docker-content-digest").unwrap();
    assert_eq!(Some(&digest), reg.digest("library/alpine", "3.20").as_ref());
    assert_ne!(
        reg.digest("library/alpine", "3.20"),
        reg.digest("library/alpine", "latest")
    );
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    assert_eq!(
        header(&resp, "ratelimit-limit").as_deref(),
        Some("100;w=21600")
    );
    assert_eq!(
        header(&resp, "ratelimit-remaining").as_deref(),
        Some("76;w=21600")
    );
    assert_eq!(
        header(&resp, "docker-ratelimit-source").as_deref(),
        Some("192.0.2.1")
    );
    let length: usize = header(&resp, "content-length").unwrap().parse().unwrap();
    assert_eq!(reg.manifest_gets_count(), 0, "HEAD is not a GET");

    // The GET body hashes to the advertised digest and length.
    let body = http
        .get(&manifest)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.len(), length);
    assert_eq!(format!("sha256:{:x}", Sha256::digest(&body)), digest);
    assert_eq!(reg.manifest_gets_count(), 1);

    // 4. The token works for /v2/, lacks scope for another repo, and a made-up one is invalid.
    let resp = http
        .get(format!("{base}/v2/"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = http
        .head(format!("{base}/v2/library/nginx/manifests/1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        param(&header(&resp, "www-authenticate").unwrap(), "error"),
        Some("insufficient_scope")
    );
    let resp = http
        .head(&manifest)
        .bearer_auth("forged")
        .send()
        .await
        .unwrap();
    assert_eq!(
        param(&header(&resp, "www-authenticate").unwrap(), "error"),
        Some("invalid_token")
    );

    // 5. Everything was recorded, in order, on the right server.
    let seen: Vec<_> = reg
        .requests()
        .iter()
        .map(|r| {
            (
                r.server,
                r.method.as_str().to_owned(),
                r.path_and_query.split('?').next().unwrap().to_owned(),
            )
        })
        .collect();
    let m = "/v2/library/alpine/manifests/3.20".to_owned();
    let (reg_, tok) = (ServerKind::Registry, ServerKind::Token);
    assert_eq!(
        seen,
        [
            (reg_, "GET".into(), "/v2/".into()),
            (tok, "GET".into(), "/token".into()),
            (reg_, "HEAD".into(), m.clone()),
            (reg_, "HEAD".into(), m.clone()),
            (reg_, "GET".into(), m.clone()),
            (reg_, "GET".into(), "/v2/".into()),
            (reg_, "HEAD".into(), "/v2/library/nginx/manifests/1".into()),
            (reg_, "HEAD".into(), m),
        ]
    );
    let requests = reg.requests();
    assert_eq!(reg.token_requests_count(), 1);
    assert!(
        requests[1]
            .path_and_query
            .contains("scope=repository%3Alibrary%2Falpine%3Apull")
    );
    assert_eq!(
        requests[3].authorization.as_deref(),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(requests[3].accept.as_deref(), Some(accept));
    assert_eq!(
        requests[3].host,
        Some(format!("registry.test:{}", reg.addr.port()))
    );
    assert_eq!(requests[0].authorization, None);
}

#[tokio::test]
async fn token_server_checks_credentials_and_service() {
    let reg = FakeRegistry::builder()
        .auth(Auth::Bearer {
            user_pass: Some(("alice".into(), "s3cret".into())),
            service: "private".into(),
        })
        .repo("team/app", &["v1"])
        .start()
        .await;
    let http = client(None, &[]);
    let base = format!("http://{}", reg.addr);
    let challenge = header(
        &http.get(format!("{base}/v2/")).send().await.unwrap(),
        "www-authenticate",
    )
    .unwrap();
    assert!(challenge.starts_with(&format!(
        "Bearer realm=\"http://127.0.0.1:{}/token\"",
        reg.token_addr.port()
    )));
    let scope = "repository:team/app:pull";

    let anonymous = fetch_token(&http, &challenge, scope, None).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let wrong = fetch_token(&http, &challenge, scope, Some(("alice", "nope"))).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["details"], "incorrect username or password");

    let bad_service = challenge.replace("service=\"private\"", "service=\"other\"");
    let resp = fetch_token(&http, &bad_service, scope, Some(("alice", "s3cret"))).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    let ok = fetch_token(&http, &challenge, scope, Some(("alice", "s3cret"))).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let token = ok.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = http
        .head(format!("{base}/v2/team/app/manifests/v1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "ratelimit-limit"),
        None,
        "no rate-limit headers unless configured"
    );
    assert_eq!(reg.token_requests_count(), 4);
}

#[tokio::test]
async fn basic_auth_flow() {
    let reg = FakeRegistry::builder()
        .auth(Auth::Basic {
            user: "bob".into(),
            pass: "pw".into(),
        })
        .repo("app", &["1.0"])
        .start()
        .await;
    let http = client(None, &[]);
    let base = format!("http://{}", reg.addr);

    let ping = http.get(format!("{base}/v2/")).send().await.unwrap();
    assert_eq!(ping.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&ping, "www-authenticate").as_deref(),
        Some("Basic realm=\"fake\"")
    );
    let ping = http
        .get(format!("{base}/v2/"))
        .basic_auth("bob", Some("pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), StatusCode::OK);
    assert_eq!(ping.text().await.unwrap(), "{}");

    let manifest = format!("{base}/v2/app/manifests/1.0");
    let resp = http
        .head(&manifest)
        .basic_auth("bob", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = http
        .head(&manifest)
        .basic_auth("bob", Some("pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(reg.token_requests_count(), 0);
}

async fn error_code(resp: reqwest::Response) -> String {
    let body: Value = resp.json().await.unwrap();
    body["errors"][0]["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn unknown_repository_tag_and_tags_list() {
    let reg = FakeRegistry::builder()
        .repo("library/alpine", &["3.20", "latest"])
        .start()
        .await;
    let http = client(None, &[]);
    let base = format!("http://{}/v2", reg.addr);

    let ping = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(
        (ping.status(), ping.text().await.unwrap().as_str()),
        (StatusCode::OK, "{}")
    );

    let resp = http
        .get(format!("{base}/library/nope/manifests/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(resp).await, "NAME_UNKNOWN");
    let resp = http
        .head(format!("{base}/library/nope/manifests/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(resp.bytes().await.unwrap().is_empty());

    let resp = http
        .get(format!("{base}/library/alpine/manifests/9.99"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(resp).await, "MANIFEST_UNKNOWN");

    let digest = reg.digest("library/alpine", "latest").unwrap();
    let resp = http
        .head(format!("{base}/library/alpine/manifests/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "manifests are also found by digest"
    );

    let tags: Value = http
        .get(format!("{base}/library/alpine/tags/list"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        tags,
        serde_json::json!({"name": "library/alpine", "tags": ["3.20", "latest"]})
    );
    let resp = http
        .get(format!("{base}/library/nope/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(resp).await, "NAME_UNKNOWN");
}

#[tokio::test]
async fn hub_semantics_hide_unknown_repositories() {
    let reg = FakeRegistry::builder()
        .auth(Auth::Bearer {
            user_pass: None,
            service: "registry.docker.io".into(),
        })
        .repo("library/alpine", &["latest"])
        .hub_semantics(true)
        .start()
        .await;
    let http = client(None, &[]);
    let base = format!("http://{}", reg.addr);
    let challenge = header(
        &http.get(format!("{base}/v2/")).send().await.unwrap(),
        "www-authenticate",
    )
    .unwrap();
    let scope = "repository:library/nope:pull repository:library/alpine:pull";
    let token: Value = fetch_token(&http, &challenge, scope, None)
        .await
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap();

    let resp = http
        .head(format!("{base}/v2/library/nope/manifests/latest"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let www = header(&resp, "www-authenticate").unwrap();
    assert_eq!(param(&www, "scope"), Some("repository:library/nope:pull"));
    assert_eq!(param(&www, "error"), Some("insufficient_scope"));
    assert_eq!(param(&www, "service"), Some("registry.docker.io"));

    let resp = http
        .head(format!("{base}/v2/library/alpine/manifests/latest"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "space-separated scopes are all granted"
    );
}

#[tokio::test]
async fn forced_manifest_statuses() {
    let cases = [
        (
            StatusOverride::TooManyRequests,
            429,
            Some("TOOMANYREQUESTS"),
        ),
        (StatusOverride::TooManyRequestsPlain, 429, None),
        (StatusOverride::Status(500), 500, Some("UNKNOWN")),
        (StatusOverride::Status(503), 503, Some("UNAVAILABLE")),
        (
            StatusOverride::HubInsufficientScope,
            401,
            Some("UNAUTHORIZED"),
        ),
    ];
    let http = client(None, &[]);
    for (forced, status, code) in cases {
        let reg = FakeRegistry::builder()
            .repo("library/alpine", &["latest"])
            .rate_limit(hub_rate_limit())
            .manifest_status(forced.clone())
            .start()
            .await;
        let url = format!("http://{}/v2/library/alpine/manifests/latest", reg.addr);
        let resp = http.get(&url).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{forced:?}");
        match forced {
            StatusOverride::TooManyRequests => {
                assert_eq!(
                    header(&resp, "ratelimit-remaining").as_deref(),
                    Some("0;w=21600")
                );
            }
            StatusOverride::HubInsufficientScope => {
                let www = header(&resp, "www-authenticate").unwrap();
                assert_eq!(param(&www, "error"), Some("insufficient_scope"));
                assert_eq!(param(&www, "scope"), Some("repository:library/alpine:pull"));
            }
            _ => {}
        }
        match code {
            Some(code) => assert_eq!(error_code(resp).await, code, "{forced:?}"),
            None => assert!(resp.text().await.unwrap().contains("Too Many Requests")),
        }
        // /v2/ is unaffected.
        let ping = http
            .get(format!("http://{}/v2/", reg.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(ping.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn hang_and_garbage_break_the_connection() {
    let http = client(None, &[]);
    for target in ["v2", "manifest"] {
        for forced in [StatusOverride::Hang, StatusOverride::Garbage] {
            let builder = FakeRegistry::builder().repo("app", &["1"]);
            let reg = match target {
                "v2" => builder.v2_status(forced.clone()),
                _ => builder.manifest_status(forced.clone()),
            }
            .start()
            .await;
            let base = format!("http://{}/v2", reg.addr);
            let (path, other) = match target {
                "v2" => ("/", "/app/manifests/1"),
                _ => ("/app/manifests/1", "/"),
            };
            // The unaffected route first, so the broken answer comes on a reused connection.
            let ok = http.get(format!("{base}{other}")).send().await.unwrap();
            assert_eq!(ok.status(), StatusCode::OK);
            let err = http
                .head(format!("{base}{path}"))
                .timeout(Duration::from_millis(300))
                .send()
                .await
                .unwrap_err();
            match forced {
                StatusOverride::Hang => assert!(err.is_timeout(), "{target} {err:?}"),
                _ => assert!(!err.is_timeout(), "{target} {err:?}"),
            }
        }
    }
    // The raw bytes really are the garbage, followed by a close.
    let reg = FakeRegistry::builder()
        .v2_status(StatusOverride::Garbage)
        .start()
        .await;
    let mut tcp = TcpStream::connect(reg.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tcp, b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    tcp.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, support::registry::GARBAGE);
}

#[tokio::test]
async fn token_behaviors() {
    let http = client(None, &[]);
    let cases = [
        (
            TokenBehavior::Ok { expires_in: None },
            200,
            ["token", "access_token"].as_slice(),
            false,
        ),
        (TokenBehavior::TokenOnly, 200, ["token"].as_slice(), false),
        (
            TokenBehavior::AccessTokenOnly,
            200,
            ["access_token"].as_slice(),
            true,
        ),
        (TokenBehavior::NoTokenField, 200, [].as_slice(), true),
        (TokenBehavior::Status(503), 503, [].as_slice(), false),
    ];
    for (behavior, status, fields, has_expiry) in cases {
        let reg = FakeRegistry::builder()
            .auth(Auth::Bearer {
                user_pass: None,
                service: "s".into(),
            })
            .token_behavior(behavior.clone())
            .start()
            .await;
        let challenge = format!("Bearer realm=\"{}\",service=\"s\"", reg.realm());
        let resp = fetch_token(&http, &challenge, "repository:a:pull", None).await;
        assert_eq!(resp.status().as_u16(), status, "{behavior:?}");
        let body: Value = resp.json().await.unwrap();
        for field in ["token", "access_token"] {
            assert_eq!(
                body.get(field).is_some(),
                fields.contains(&field),
                "{behavior:?} {field}"
            );
        }
        if status == 200 {
            assert_eq!(body.get("expires_in").is_some(), has_expiry, "{behavior:?}");
        }
    }

    let reg = FakeRegistry::builder()
        .auth(Auth::Bearer {
            user_pass: None,
            service: "s".into(),
        })
        .token_behavior(TokenBehavior::NotJson)
        .start()
        .await;
    let challenge = format!("Bearer realm=\"{}\",service=\"s\"", reg.realm());
    let resp = fetch_token(&http, &challenge, "repository:a:pull", None).await;
    assert!(resp.json::<Value>().await.is_err());

    let reg = FakeRegistry::builder()
        .auth(Auth::Bearer {
            user_pass: None,
            service: "s".into(),
        })
        .token_behavior(TokenBehavior::Hang)
        .start()
        .await;
    let url = format!("{}?service=s", reg.realm());
    let err = http
        .get(url)
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
}

#[tokio::test]
async fn token_server_can_have_its_own_certificate() {
    let ca = TestCa::new("ca");
    let good = ca.leaf(&["127.0.0.1"], Validity::Valid);
    let expired = ca.leaf(&["127.0.0.1"], Validity::Expired);
    let reg = FakeRegistry::builder()
        .tls(server_config(&good))
        .token_tls(server_config(&expired))
        .auth(Auth::Bearer {
            user_pass: None,
            service: "s".into(),
        })
        .start()
        .await;
    let http = client(Some(&ca), &[]);
    let ping = http
        .get(format!("https://{}/v2/", reg.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), StatusCode::UNAUTHORIZED);
    assert!(reg.realm().starts_with("https://127.0.0.1:"));
    let err = http
        .get(format!("{}?service=s", reg.realm()))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert_eq!(
        reg.token_requests_count(),
        0,
        "the handshake failed before any request"
    );
}

#[tokio::test]
async fn fakes_stop_when_dropped() {
    let reg = FakeRegistry::builder().start().await;
    let dns = FakeDns::start(vec![]).await;
    let stall = TlsStall::start().await;
    let addrs = [reg.addr, reg.token_addr, dns.addr, stall.addr];
    for addr in addrs {
        TcpStream::connect(addr).await.unwrap();
    }
    drop((reg, dns, stall));
    for addr in addrs {
        let mut refused = false;
        for _ in 0..50 {
            if TcpStream::connect(addr).await.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(refused, "{addr} still accepts after drop");
    }
}
