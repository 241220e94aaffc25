//! A tiny authoritative DNS responder on `127.0.0.1:<port>`, UDP and TCP on the same port.
//!
//! Each name in the zone has a [`DnsBehavior`]; names not in the zone get NXDOMAIN. The responder
//! echoes the question, copies the ID and RD bit, sets QR and RA, and counts every question it
//! receives so tests can prove the prober does not cache. Over UDP an answer larger than the
//! client's payload size (512 bytes without EDNS) is truncated with the TC bit set, as a real
//! server does, so [`DnsBehavior::Many`] exercises the TCP fallback too. The server tasks stop
//! when the [`FakeDns`] is dropped.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::proto::op::{Edns, Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA};
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::{CancellationToken, DropGuard};

/// What the fake server does for one name.
#[derive(Clone, Debug)]
pub enum DnsBehavior {
    /// NOERROR; A queries get the v4 addresses, AAAA queries the v6 ones (empty if none).
    Answer(Vec<IpAddr>),
    /// NXDOMAIN.
    NxDomain,
    /// SERVFAIL.
    ServFail,
    /// REFUSED.
    Refused,
    /// NOERROR with no records (NODATA).
    NoData,
    /// Never answers (the question is still counted).
    Silent,
    /// Over UDP: TC bit set and no records. Over TCP: these addresses, as for `Answer`.
    Truncate(Vec<IpAddr>),
    /// That many A records, `127.0.0.1`, `127.0.0.2`, …; no AAAA records.
    Many(usize),
}

/// A running fake DNS server. Point a resolver at [`FakeDns::addr`] (UDP and TCP).
pub struct FakeDns {
    pub addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    asked: Arc<Mutex<Vec<String>>>,
    _stop: DropGuard,
}

struct Zone {
    names: HashMap<String, DnsBehavior>,
    queries: Arc<AtomicUsize>,
    asked: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone, Copy, PartialEq)]
enum Transport {
    Udp,
    Tcp,
}

impl FakeDns {
    /// Starts the server. Names are matched case-insensitively, with or without a trailing dot.
    pub async fn start(zone: Vec<(&str, DnsBehavior)>) -> FakeDns {
        let (udp, tcp) = bind_same_port().await;
        Self::serve(udp, tcp, zone)
    }

    /// Starts the server on `addr` exactly (UDP and TCP), e.g. port 53 of a loopback address
    /// for a resolv.conf, whose `nameserver` lines cannot name a port.
    pub async fn start_at(addr: SocketAddr, zone: Vec<(&str, DnsBehavior)>) -> FakeDns {
        let udp = UdpSocket::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("{addr}: {e}"));
        let tcp = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("{addr}: {e}"));
        Self::serve(udp, tcp, zone)
    }

    fn serve(udp: UdpSocket, tcp: TcpListener, zone: Vec<(&str, DnsBehavior)>) -> FakeDns {
        let addr = udp.local_addr().unwrap();
        let queries = Arc::new(AtomicUsize::new(0));
        let asked = Arc::new(Mutex::new(Vec::new()));
        let zone = Arc::new(Zone {
            names: zone.into_iter().map(|(n, b)| (normalise(n), b)).collect(),
            queries: queries.clone(),
            asked: asked.clone(),
        });
        let stop = CancellationToken::new();
        super::spawn_until(&stop, serve_udp(udp, zone.clone()));
        super::spawn_until(&stop, serve_tcp(tcp, zone, stop.clone()));
        FakeDns {
            addr,
            queries,
            asked,
            _stop: stop.drop_guard(),
        }
    }

    /// How many questions the server has received so far, over UDP and TCP together.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    /// The questions received so far, in order, as `"name TYPE"` (the name as sent, lower-case,
    /// with its trailing dot), e.g. `"registry.svc.test. AAAA"`.
    pub fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }

    /// A resolver config with this server as the only name server, over UDP and TCP.
    pub fn resolver_config(&self) -> ResolverConfig {
        let mut ns = NameServerConfig::udp_and_tcp(self.addr.ip());
        for conn in &mut ns.connections {
            conn.port = self.addr.port();
        }
        ResolverConfig::from_name_servers(vec![ns])
    }
}

/// Binds UDP on an ephemeral port, then TCP on the same port (retrying if that port is taken).
async fn bind_same_port() -> (UdpSocket, TcpListener) {
    for _ in 0..20 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
            return (udp, tcp);
        }
    }
    panic!("could not bind UDP and TCP on the same loopback port");
}

fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

async fn serve_udp(socket: UdpSocket, zone: Arc<Zone>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(reply) = zone.answer(&buf[..len], Transport::Udp) {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, zone: Arc<Zone>, stop: CancellationToken) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        super::spawn_until(&stop, serve_tcp_conn(stream, zone.clone()));
    }
}

/// Serves length-prefixed messages on one TCP connection until the client closes it.
async fn serve_tcp_conn(mut stream: TcpStream, zone: Arc<Zone>) -> std::io::Result<()> {
    loop {
        let len = stream.read_u16().await?;
        let mut msg = vec![0u8; usize::from(len)];
        stream.read_exact(&mut msg).await?;
        if let Some(reply) = zone.answer(&msg, Transport::Tcp) {
            let len = u16::try_from(reply.len()).expect("DNS reply over 64 KiB");
            stream.write_all(&len.to_be_bytes()).await?;
            stream.write_all(&reply).await?;
        }
    }
}

impl Zone {
    /// Builds the encoded reply to one request, or `None` to stay silent.
    fn answer(&self, request: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let request = Message::from_vec(request).ok()?;
        self.queries
            .fetch_add(request.queries.len().max(1), Ordering::SeqCst);
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
        reply.metadata.recursion_desired = request.metadata.recursion_desired;
        reply.metadata.recursion_available = true;
        reply.metadata.authoritative = true;
        reply.queries = request.queries.clone();
        if request.edns.is_some() {
            reply.edns = Some(Edns::new());
        }
        // Resolvers send one question per message; answer the first.
        let query = request.queries.first()?;
        let name = query.name().clone();
        self.asked.lock().unwrap().push(format!(
            "{} {}",
            name.to_ascii().to_ascii_lowercase(),
            query.query_type()
        ));
        let behavior = self.names.get(&normalise(&name.to_ascii()));
        let addrs: Vec<IpAddr> = match behavior {
            None | Some(DnsBehavior::NxDomain) => {
                reply.metadata.response_code = ResponseCode::NXDomain;
                vec![]
            }
            Some(DnsBehavior::ServFail) => {
                reply.metadata.response_code = ResponseCode::ServFail;
                vec![]
            }
            Some(DnsBehavior::Refused) => {
                reply.metadata.response_code = ResponseCode::Refused;
                vec![]
            }
            Some(DnsBehavior::Silent) => return None,
            Some(DnsBehavior::NoData) => vec![],
            Some(DnsBehavior::Truncate(_)) if transport == Transport::Udp => {
                reply.metadata.truncation = true;
                vec![]
            }
            Some(DnsBehavior::Answer(ips) | DnsBehavior::Truncate(ips)) => ips.clone(),
            Some(DnsBehavior::Many(n)) => (0..*n)
                .map(|i| IpAddr::V4((u32::from(Ipv4Addr::LOCALHOST) + i as u32).into()))
                .collect(),
        };
        for ip in addrs {
            let rdata = match (query.query_type(), ip) {
                (RecordType::A, IpAddr::V4(v4)) => RData::A(A(v4)),
                (RecordType::AAAA, IpAddr::V6(v6)) => RData::AAAA(AAAA(v6)),
                _ => continue,
            };
            reply
                .answers
                .push(Record::from_rdata(name.clone(), 60, rdata));
        }
        let bytes = reply.to_vec().ok()?;
        if transport == Transport::Udp && bytes.len() > usize::from(request.max_payload()) {
            return reply.truncate().to_vec().ok();
        }
        Some(bytes)
    }
}
