//! Self-tests for the fakes in [`crate::support`]: each checks, with a real client (hickory,
//! rustls, reqwest), that a fake behaves as the engine tests will assume.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use hickory_resolver::config::{ResolveHosts, ResolverOpts};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::{Message, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use tokio::net::UdpSocket;

use crate::support::dns::{DnsBehavior, FakeDns};

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
