//! Self-tests for the fakes in [`crate::support`]: each checks, with a real client (hickory,
//! rustls, reqwest), that a fake behaves as the engine tests will assume.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{ResolveHosts, ResolverOpts};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::{Message, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use rustls_pki_types::ServerName;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::support::dns::{DnsBehavior, FakeDns};
use crate::support::tls::{Leaf, TestCa, TlsReset, TlsStall, Validity, server_config};
use crate::support::{closed_port, silent_listener};

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
