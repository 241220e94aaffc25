//! The proxy path: the test proxy fixture ([`ConnectProxy`]) checked byte by byte, and
//! pullprobe's reading of the proxy environment (`node::proxy::ProxyEnv`, public API) pointed
//! at it. The dial through a proxy itself (`probe::proxy`, crate-private) is unit-tested in
//! `src/probe/proxy.rs`.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use pullprobe::node::proxy::{ProxyEnv, ProxyKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

use crate::support::proxy::{ConnectProxy, ProxyMode};

/// A loopback server that answers every connection with `greeting`, then echoes.
async fn echo_server(greeting: &'static [u8]) -> SocketAddr {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = c.write_all(greeting).await;
                let (mut r, mut w) = c.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Sends `request` to `addr` and reads until the end of a response head (or EOF, or 2 s).
async fn ask(addr: SocketAddr, request: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(2), s.read(&mut b)).await {
            Ok(Ok(1)) => got.push(b[0]),
            _ => break,
        }
    }
    (s, String::from_utf8_lossy(&got).into_owned())
}

fn connect(target: &str, auth: Option<&str>) -> String {
    let auth = auth
        .map(|a| format!("Proxy-Authorization: {a}\r\n"))
        .unwrap_or_default();
    format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n")
}

#[tokio::test]
async fn tunnels_to_a_name_only_the_proxy_resolves() {
    let upstream = echo_server(b"hello ").await;
    let proxy = ConnectProxy::start()
        .map_host("registry.test", Ipv4Addr::LOCALHOST)
        .await;
    let target = format!("registry.test:{}", upstream.port());
    let (mut s, head) = ask(proxy.addr(), &connect(&target, None)).await;
    assert_eq!(head, "HTTP/1.1 200 Connection established\r\n\r\n");
    s.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 10];
    s.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"hello ping");
    let seen = proxy.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "CONNECT");
    assert_eq!(seen[0].target, target);
    assert_eq!(seen[0].status, 200);
    assert_eq!(seen[0].proxy_authorization, None);
}

/// The `Proxy-Authorization` pullprobe computes from a proxy URL (Go's `proxyAuth`) is what a
/// proxy requiring Basic accepts; without it the answer is 407 with a challenge.
#[tokio::test]
async fn basic_credentials_from_the_proxy_url_are_accepted() {
    let upstream = echo_server(b"").await;
    let proxy = ConnectProxy::start()
        .require_basic("bob", "s3cr:et")
        .map_host("registry.test", Ipv4Addr::LOCALHOST)
        .await;
    let target = format!("registry.test:{}", upstream.port());
    let (_, head) = ask(proxy.addr(), &connect(&target, None)).await;
    assert!(
        head.starts_with("HTTP/1.1 407 Proxy Authentication Required\r\n"),
        "{head}"
    );
    assert!(
        head.contains("Proxy-Authenticate: Basic realm=\"pullprobe-test\""),
        "{head}"
    );

    let env = ProxyEnv::from_vars([("HTTPS_PROXY", proxy.url_with("bob", "s3cr%3Aet"))]);
    let url = Url::parse(&format!("https://{target}/v2/")).unwrap();
    let p = env
        .proxy_for(&url)
        .unwrap()
        .expect("registry.test is proxied");
    assert_eq!(p.kind(), ProxyKind::Http);
    assert_eq!(p.to_string(), format!("http://bob:***@{}", proxy.addr()));
    let dial = SocketAddr::new(p.host().parse().unwrap(), p.port().unwrap());
    assert_eq!(dial, proxy.addr());
    let auth = p.authorization().unwrap();
    let (_, head) = ask(dial, &connect(&target, Some(auth.expose()))).await;
    assert_eq!(head, "HTTP/1.1 200 Connection established\r\n\r\n");
    let seen = proxy.seen();
    assert_eq!(seen[0].status, 407);
    assert_eq!(seen[1].status, 200);
    assert_eq!(
        seen[1].proxy_authorization.as_deref(),
        Some("Basic Ym9iOnMzY3I6ZXQ=")
    );
}

/// A containerd drop-in naming the fixture: the registry goes through it, `NO_PROXY` and
/// loopback registries do not.
#[tokio::test]
async fn a_systemd_drop_in_names_the_proxy() {
    let proxy = ConnectProxy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("http-proxy.conf");
    std::fs::write(
        &path,
        format!(
            "[Service]\nEnvironment=\"HTTPS_PROXY={}\" \"NO_PROXY=.internal,10.0.0.0/8\"\n",
            proxy.url_with("bob", "pw")
        ),
    )
    .unwrap();
    let env = ProxyEnv::from_file(&path).unwrap();
    assert!(env.warnings().is_empty(), "{:?}", env.warnings());
    let via = |u: &str| {
        env.proxy_for(&Url::parse(u).unwrap())
            .unwrap()
            .map(|p| p.to_string())
    };
    assert_eq!(
        via("https://registry.test:5000/v2/").as_deref(),
        Some(format!("http://bob:***@{}", proxy.addr()).as_str())
    );
    assert_eq!(via("https://mirror.internal/v2/"), None);
    assert_eq!(via("https://10.1.2.3/v2/"), None);
    assert_eq!(via("https://127.0.0.1:5000/v2/"), None);
    assert_eq!(via("https://localhost:5000/v2/"), None);
    // HTTPS_PROXY only: http:// registries go direct.
    assert_eq!(via("http://registry.test:5000/v2/"), None);
}

#[tokio::test]
async fn broken_proxy_modes() {
    let p = ConnectProxy::start()
        .mode(ProxyMode::Status(403, "Forbidden by policy"))
        .await;
    let (_, head) = ask(p.addr(), &connect("registry.test:443", None)).await;
    assert!(
        head.starts_with("HTTP/1.1 403 Forbidden by policy\r\n"),
        "{head}"
    );
    assert_eq!(p.seen()[0].status, 403);

    let p = ConnectProxy::start()
        .mode(ProxyMode::Garbage(b"SSH-2.0-OpenSSH_9.2\r\n".to_vec()))
        .await;
    let (mut s, head) = ask(p.addr(), &connect("registry.test:443", None)).await;
    assert_eq!(head, "SSH-2.0-OpenSSH_9.2\r\n");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    assert!(
        rest.is_empty(),
        "the connection is closed after the garbage"
    );

    let p = ConnectProxy::start().mode(ProxyMode::Close).await;
    let (_, head) = ask(p.addr(), &connect("registry.test:443", None)).await;
    assert_eq!(head, "");
    assert_eq!(p.seen()[0].target, "registry.test:443");

    let p = ConnectProxy::start().mode(ProxyMode::Silent).await;
    let mut s = TcpStream::connect(p.addr()).await.unwrap();
    s.write_all(connect("registry.test:443", None).as_bytes())
        .await
        .unwrap();
    let mut b = [0u8; 1];
    let r = tokio::time::timeout(Duration::from_millis(300), s.read(&mut b)).await;
    assert!(r.is_err(), "a silent proxy answered: {r:?}");
}

#[tokio::test]
async fn a_talkative_proxy_writes_after_its_200() {
    let upstream = echo_server(b"").await;
    let p = ConnectProxy::start()
        .mode(ProxyMode::ForwardAfter(b"EARLY".to_vec()))
        .await;
    let target = format!("127.0.0.1:{}", upstream.port());
    let (mut s, head) = ask(p.addr(), &connect(&target, None)).await;
    assert_eq!(head, "HTTP/1.1 200 Connection established\r\n\r\n");
    let mut early = [0u8; 5];
    s.read_exact(&mut early).await.unwrap();
    assert_eq!(&early, b"EARLY");
}

/// Only loopback is ever dialled: unmapped names and other addresses get 502.
#[tokio::test]
async fn refuses_unmapped_names_and_non_loopback_addresses() {
    let p = ConnectProxy::start().await;
    for target in ["unmapped.test:443", "10.1.2.3:443", "[2001:db8::1]:443"] {
        let (_, head) = ask(p.addr(), &connect(target, None)).await;
        assert!(head.starts_with("HTTP/1.1 502 "), "{target}: {head}");
    }
    assert!(p.seen().iter().all(|s| s.status == 502));
}

/// What Go sends for an `http://` registry through `HTTP_PROXY`: the absolute form, which
/// the fixture forwards as it is.
#[tokio::test]
async fn forwards_absolute_form_requests() {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port = l.local_addr().unwrap().port();
    let upstream = tokio::spawn(async move {
        let (mut c, _) = l.accept().await.unwrap();
        let mut got = Vec::new();
        let mut b = [0u8; 1024];
        while !got.ends_with(b"\r\n\r\n") {
            let n = c.read(&mut b).await.unwrap();
            got.extend_from_slice(&b[..n]);
        }
        c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await
            .unwrap();
        String::from_utf8(got).unwrap()
    });
    let p = ConnectProxy::start()
        .require_basic("bob", "pw")
        .map_host("registry.test", Ipv4Addr::LOCALHOST)
        .await;
    let request = format!(
        "HEAD http://registry.test:{port}/v2/foo/manifests/bar HTTP/1.1\r\nHost: registry.test:{port}\r\nProxy-Authorization: Basic Ym9iOnB3\r\n\r\n"
    );
    let (_, head) = ask(p.addr(), &request).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(upstream.await.unwrap(), request);
    let seen = p.seen();
    assert_eq!(seen[0].method, "HEAD");
    assert_eq!(
        seen[0].target,
        format!("http://registry.test:{port}/v2/foo/manifests/bar")
    );
}

// ---- the probe through a proxy, end to end ---------------------------------------------------

mod through_the_engine {
    use std::path::Path;

    use pullprobe::config::Config;
    use pullprobe::outcome::{Phase, Reason};
    use pullprobe::probe::{ProbeReport, Prober};

    use crate::support::init;
    use crate::support::proxy::{ConnectProxy, ProxyMode};
    use crate::support::registry::FakeRegistry;
    use crate::support::tls::{TestCa, Validity, server_config};

    /// Probes `image` with containerd's proxy environment in a systemd drop-in holding `env`
    /// (`KEY=value` assignments). `registry.test` has no DNS: only the proxy can reach it,
    /// unless `hosts_line` maps it in the probe's own hosts file.
    async fn probe(dir: &Path, env: &str, target: &str, hosts_line: &str) -> ProbeReport {
        init();
        let dropin = dir.join("http-proxy.conf");
        std::fs::write(&dropin, format!("[Service]\nEnvironment={env}\n")).unwrap();
        let hosts = dir.join("hosts");
        std::fs::write(&hosts, format!("{hosts_line}\n")).unwrap();
        let resolv = dir.join("resolv.conf");
        std::fs::write(
            &resolv,
            "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
        )
        .unwrap();
        let yaml = format!(
            "timeout: 5s\ndns:\n  hosts_file: {}\n  resolv_conf: {}\nnode:\n  runtime: none\n  containerd:\n    proxy_env_file: {}\ntargets:\n  - {target}\n",
            hosts.display(),
            resolv.display(),
            dropin.display()
        );
        let config =
            Config::from_yaml("test.yaml", &yaml, dir).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        Prober::from_config(&config).probe(&config.targets[0]).await
    }

    /// Go `ProxyFromEnvironment` + `Transport.dialConn`: HTTP_PROXY sends plain-HTTP requests in
    /// absolute form; HTTPS_PROXY tunnels with CONNECT and TLS to the registry runs through it;
    /// NO_PROXY goes direct.
    #[tokio::test]
    async fn the_registry_is_reached_through_containerds_proxy() {
        pullprobe::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let reg = FakeRegistry::builder().repo("app", &["1"]).start().await;
        let port = reg.addr.port();
        let proxy = ConnectProxy::start()
            .map_host("registry.test", std::net::Ipv4Addr::LOCALHOST)
            .await;
        let target = format!("image: registry.test:{port}/app:1\n    plain_http: true");

        let r = probe(
            dir.path(),
            &format!("HTTP_PROXY={}", proxy.url()),
            &target,
            "",
        )
        .await;
        assert!(r.ok(), "{:?}", r.failure);
        let seen = proxy.seen();
        assert!(
            seen.iter()
                .any(|s| s.target == format!("http://registry.test:{port}/v2/app/manifests/1")),
            "{seen:?}"
        );

        // NO_PROXY: straight to the registry, found through the hosts file.
        let before = proxy.seen().len();
        let r = probe(
            dir.path(),
            &format!("\"HTTP_PROXY={}\" \"NO_PROXY=.test\"", proxy.url()),
            &target,
            "127.0.0.1 registry.test",
        )
        .await;
        assert!(r.ok(), "{:?}", r.failure);
        assert_eq!(proxy.seen().len(), before, "NO_PROXY must bypass the proxy");

        // HTTPS through CONNECT, the registry's certificate checked through the tunnel.
        let ca = TestCa::new("registry CA");
        let tls_reg = FakeRegistry::builder()
            .tls(server_config(&ca.leaf(&["registry.test"], Validity::Valid)))
            .repo("app", &["1"])
            .start()
            .await;
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.ca_pem()).unwrap();
        let tls_target = format!(
            "image: registry.test:{}/app:1\n    tls:\n      ca_file: {}",
            tls_reg.addr.port(),
            ca_file.display()
        );
        let r = probe(
            dir.path(),
            &format!("HTTPS_PROXY={}", proxy.url()),
            &tls_target,
            "",
        )
        .await;
        assert!(r.ok(), "{:?}", r.failure);
        assert!(
            proxy.seen().iter().any(|s| s.method == "CONNECT"
                && s.target == format!("registry.test:{}", tls_reg.addr.port())),
            "{:?}",
            proxy.seen()
        );
        assert_eq!(r.tls.as_ref().and_then(|t| t.version), Some("TLSv1.3"));
    }

    /// A proxy's 407 is `auth_failed` naming the proxy; credentials in the proxy URL are sent
    /// as Go sends them and never shown.
    #[tokio::test]
    async fn a_proxy_asking_for_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let reg = FakeRegistry::builder().repo("app", &["1"]).start().await;
        let proxy = ConnectProxy::start()
            .map_host("registry.test", std::net::Ipv4Addr::LOCALHOST)
            .require_basic("proxy-user", "proxy-Secret1")
            .await;
        let target = format!(
            "image: registry.test:{}/app:1\n    plain_http: true",
            reg.addr.port()
        );
        let r = probe(
            dir.path(),
            &format!("HTTP_PROXY={}", proxy.url()),
            &target,
            "",
        )
        .await;
        let f = r.failure.expect("407");
        assert_eq!(f.reason, Reason::AuthFailed, "{}", f.message);
        assert!(
            f.message.contains(&proxy.url()) || f.message.contains("proxy"),
            "{}",
            f.message
        );

        let with = proxy.url_with("proxy-user", "proxy-Secret1");
        let r = probe(dir.path(), &format!("HTTP_PROXY={with}"), &target, "").await;
        assert!(r.ok(), "{:?}", r.failure);

        let wrong = proxy.url_with("proxy-user", "wrong-Secret2");
        let r = probe(dir.path(), &format!("HTTP_PROXY={wrong}"), &target, "").await;
        let f = r.failure.expect("407");
        assert_eq!(f.reason, Reason::AuthFailed);
        assert!(!f.message.contains("wrong-Secret2"), "{}", f.message);
    }

    /// containerd's HTTP fallback (`docker.NewHTTPFallback`: an `http://` host with TLS
    /// settings is tried over HTTPS first) sends the retried request through the proxy Go's
    /// `ProxyFromEnvironment` picks for `http://`, HTTP_PROXY; a 407 there names that proxy,
    /// not the HTTPS_PROXY the abandoned HTTPS attempt tunnelled through (issue #12).
    #[tokio::test]
    async fn http_fallback_names_the_http_proxy_not_the_abandoned_https_one() {
        use crate::support::containerd::HostsDir;
        pullprobe::install_crypto_provider();
        init();
        let dir = tempfile::tempdir().unwrap();
        let reg = FakeRegistry::builder().repo("app", &["1"]).start().await;
        let host = format!("registry.test:{}", reg.addr.port());
        let tunnel = ConnectProxy::start()
            .map_host("registry.test", std::net::Ipv4Addr::LOCALHOST)
            .await;
        let forward = ConnectProxy::start()
            .map_host("registry.test", std::net::Ipv4Addr::LOCALHOST)
            .require_basic("proxy-user", "proxy-Secret1")
            .await;
        let hosts = HostsDir::new();
        hosts.hosts_toml(
            &host,
            &format!("[host.\"http://{host}\"]\n  skip_verify = true\n"),
        );
        let dropin = dir.path().join("http-proxy.conf");
        std::fs::write(
            &dropin,
            format!(
                "[Service]\nEnvironment=\"HTTPS_PROXY={}\" \"HTTP_PROXY={}\"\n",
                tunnel.url(),
                forward.url()
            ),
        )
        .unwrap();
        let yaml = format!(
            "timeout: 5s\nnode:\n  runtime: containerd\n  containerd:\n    config_path: {}\n    proxy_env_file: {}\ntargets:\n  - image: {host}/app:1\n",
            hosts.path().display(),
            dropin.display()
        );
        let config = Config::from_yaml("test.yaml", &yaml, dir.path()).unwrap();
        let r = Prober::from_config(&config).probe(&config.targets[0]).await;
        // The HTTPS attempt went through the tunnel, the plain retry through HTTP_PROXY.
        assert!(
            tunnel.seen().iter().any(|s| s.method == "CONNECT"),
            "{:?}",
            tunnel.seen()
        );
        assert!(!forward.seen().is_empty());
        let f = r.failure.expect("407");
        assert_eq!(f.reason, Reason::AuthFailed, "{}", f.message);
        assert!(f.message.contains("(from HTTP_PROXY in "), "{}", f.message);
        assert!(f.message.contains(&forward.url()), "{}", f.message);
        assert!(!f.message.contains(&tunnel.url()), "{}", f.message);
        // Nor is the abandoned handshake reported.
        assert_eq!(r.tls, None);
    }

    /// Failures on the way to the proxy are the proxy's, and the message says so.
    #[tokio::test]
    async fn the_way_to_the_proxy_is_named_in_failures() {
        let dir = tempfile::tempdir().unwrap();
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let r = probe(
            dir.path(),
            &format!("HTTPS_PROXY=http://{dead}"),
            "image: registry.test:5000/app:1",
            "",
        )
        .await;
        let f = r.failure.expect("refused");
        assert_eq!(
            (f.phase, f.reason),
            (Phase::Connect, Reason::ConnectRefused),
            "{}",
            f.message
        );
        let dropin = dir.path().join("http-proxy.conf");
        assert_eq!(
            f.message,
            format!(
                "on the way to the proxy http://{dead} (from HTTPS_PROXY in containerd's environment ({})), so the registry was not reached: {dead}: Connection refused",
                dropin.display()
            )
        );
        assert_eq!(
            f.remedy().unwrap(),
            format!(
                "nothing accepts connections on 127.0.0.1 port {}: check that the proxy runs and listens on that port; or, if it is the wrong proxy, correct HTTPS_PROXY in containerd's environment ({}) and restart containerd",
                dead.port(),
                dropin.display()
            )
        );

        // The proxy's name does not resolve: a DNS failure about the proxy, not the registry.
        let r = probe(
            dir.path(),
            "HTTPS_PROXY=http://proxy.invalid:3128",
            "image: registry.test:5000/app:1",
            "",
        )
        .await;
        let f = r.failure.expect("no address for the proxy");
        assert_eq!(f.phase, Phase::Dns, "{}", f.message);
        assert!(
            f.message.starts_with(&format!(
                "on the way to the proxy http://proxy.invalid:3128 (from HTTPS_PROXY in containerd's environment ({})), so the registry was not reached: ",
                dropin.display()
            )),
            "{}",
            f.message
        );
        let remedy = f.remedy().unwrap();
        assert!(
            remedy.starts_with(
                "the node resolves the proxy's name proxy.invalid itself before any pull: "
            ) && remedy.ends_with(&format!(
                "correct HTTPS_PROXY in containerd's environment ({}) and restart containerd",
                dropin.display()
            )) && !remedy.contains("registry.test"),
            "{remedy}"
        );

        // https:// names a proxy that speaks plain HTTP: the TLS handshake with the proxy fails.
        let plain = super::echo_server(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        let https = format!("https://{plain}");
        let r = probe(
            dir.path(),
            &format!("HTTPS_PROXY={https}"),
            "image: registry.test:5000/app:1",
            "",
        )
        .await;
        let f = r.failure.expect("no TLS from the proxy");
        assert_eq!(f.phase, Phase::Tls, "{}", f.message);
        assert!(
            f.message.starts_with(&format!(
                "on the way to the proxy {https} (from HTTPS_PROXY in containerd's environment"
            )),
            "{}",
            f.message
        );
        assert!(
            f.message.ends_with(
                "so the registry was not reached: 127.0.0.1: the proxy sent a malformed or unexpected TLS message (is it speaking TLS on this port?)"
            ),
            "{}",
            f.message
        );
        let remedy = f.remedy().unwrap();
        assert!(
            remedy.contains("for a proxy that speaks plain HTTP, write http:// in HTTPS_PROXY"),
            "{remedy}"
        );

        let forbidding = ConnectProxy::start()
            .mode(ProxyMode::Status(403, "Forbidden by policy"))
            .await;
        let r = probe(
            dir.path(),
            &format!("HTTPS_PROXY={}", forbidding.url()),
            "image: registry.test:5000/app:1",
            "",
        )
        .await;
        let f = r.failure.expect("403");
        assert_eq!(f.reason, Reason::ConnectError, "{}", f.message);
        assert!(f.message.contains("Forbidden by policy"), "{}", f.message);
    }
}
