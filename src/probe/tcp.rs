//! The `connect` phase: a TCP connection to the resolved addresses, the way Go's dialer
//! (and so containerd) does it.
//!
//! Order: addresses the node has a route to come first (a UDP `connect`, which sends no packet,
//! asks the kernel for a source address — RFC 6724 rule 1, as Go's address sorting does), then
//! IPv6 before IPv4 (RFC 6724's default precedence), keeping the resolver's order otherwise.
//! The family of the first address is primary; its addresses are tried one after another, each
//! with a share of the remaining time (at least 2 s, as Go's `partialDeadline`). The other family
//! starts 300 ms later in parallel ("happy eyeballs", Go's `FallbackDelay`). The first connection
//! wins; if all fail, the first primary error is reported.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

use super::StepError;
use crate::outcome::Reason;

const FALLBACK_DELAY: Duration = Duration::from_millis(300);
const MIN_ATTEMPT: Duration = Duration::from_secs(2);

/// Orders addresses as described in the module docs.
pub(crate) async fn sort_addresses(addrs: Vec<IpAddr>, port: u16) -> Vec<IpAddr> {
    let mut keyed = Vec::with_capacity(addrs.len());
    for (i, ip) in addrs.into_iter().enumerate() {
        let routable = has_route(SocketAddr::new(ip, port)).await;
        keyed.push((!routable, ip.is_ipv4(), i, ip));
    }
    keyed.sort();
    let mut out: Vec<IpAddr> = keyed.into_iter().map(|k| k.3).collect();
    out.dedup();
    out
}

async fn has_route(addr: SocketAddr) -> bool {
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    match UdpSocket::bind(bind).await {
        Ok(s) => s.connect(addr).await.is_ok(),
        Err(_) => false,
    }
}

/// Connects to one of `addrs` (already sorted) by the deadline.
pub(crate) async fn connect(
    addrs: &[IpAddr],
    port: u16,
    deadline: Instant,
) -> Result<(TcpStream, SocketAddr), StepError> {
    let Some(first) = addrs.first() else {
        return Err(StepError::new(
            Reason::ConnectError,
            "no address to connect to",
        ));
    };
    let (primary, fallback): (Vec<IpAddr>, Vec<IpAddr>) =
        addrs.iter().partition(|ip| ip.is_ipv4() == first.is_ipv4());
    let primary_fut = serial(&primary, port, deadline);
    if fallback.is_empty() {
        return primary_fut.await;
    }
    let fallback_fut = async {
        tokio::time::sleep(FALLBACK_DELAY).await;
        serial(&fallback, port, deadline).await
    };
    tokio::pin!(primary_fut, fallback_fut);
    let (mut primary_err, mut fallback_err) = (None, None);
    loop {
        tokio::select! {
            r = &mut primary_fut, if primary_err.is_none() => match r {
                Ok(ok) => return Ok(ok),
                Err(e) => primary_err = Some(e),
            },
            r = &mut fallback_fut, if fallback_err.is_none() => match r {
                Ok(ok) => return Ok(ok),
                Err(e) => fallback_err = Some(e),
            },
        }
        if let (Some(p), Some(_)) = (&primary_err, &fallback_err) {
            return Err(p.clone());
        }
    }
}

async fn serial(
    addrs: &[IpAddr],
    port: u16,
    deadline: Instant,
) -> Result<(TcpStream, SocketAddr), StepError> {
    let mut first_err = None;
    for (i, ip) in addrs.iter().enumerate() {
        let addr = SocketAddr::new(*ip, port);
        let now = Instant::now();
        let remaining = deadline.saturating_duration_since(now);
        let left = u32::try_from(addrs.len() - i).unwrap_or(u32::MAX);
        let share = (remaining / left).max(MIN_ATTEMPT).min(remaining);
        let err = match tokio::time::timeout(share, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok((stream, addr));
            }
            Ok(Err(e)) => classify(addr, &e),
            Err(_) => StepError::new(
                Reason::ConnectTimeout,
                format!(
                    "{addr}: no answer within {}",
                    humantime::format_duration(round_ms(share))
                ),
            ),
        };
        first_err.get_or_insert(err);
    }
    Err(first_err
        .unwrap_or_else(|| StepError::new(Reason::ConnectError, "no address to connect to")))
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn classify(addr: SocketAddr, e: &io::Error) -> StepError {
    // Linux errno values, for kernels/libstd versions that report them as `Other`.
    const ENETUNREACH: i32 = 101;
    const EHOSTUNREACH: i32 = 113;
    let reason = match (e.kind(), e.raw_os_error()) {
        (io::ErrorKind::ConnectionRefused, _) => Reason::ConnectRefused,
        (io::ErrorKind::TimedOut, _) => Reason::ConnectTimeout,
        (io::ErrorKind::NetworkUnreachable | io::ErrorKind::HostUnreachable, _)
        | (_, Some(ENETUNREACH | EHOSTUNREACH)) => Reason::ConnectUnreachable,
        _ => Reason::ConnectError,
    };
    StepError::new(reason, format!("{addr}: {}", super::os_text(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn routable_and_ipv6_first_then_resolver_order() {
        let addrs: Vec<IpAddr> = ["127.0.0.2", "::1", "127.0.0.1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let sorted = sort_addresses(addrs, 443).await;
        // Loopback is always routable; ::1 is first only where IPv6 is enabled.
        let v4: Vec<_> = sorted
            .iter()
            .filter(|a| a.is_ipv4())
            .map(ToString::to_string)
            .collect();
        assert_eq!(v4, ["127.0.0.2", "127.0.0.1"]);
    }

    #[tokio::test]
    async fn refused_is_classified_and_the_address_reported() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let err = connect(&[ip], port, Instant::now() + Duration::from_secs(2))
            .await
            .unwrap_err();
        assert_eq!(err.reason, Reason::ConnectRefused);
        assert!(
            err.message.contains(&format!("127.0.0.1:{port}")),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn falls_back_to_the_next_address() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        // 127.0.0.2 is loopback too but nothing listens there on this port.
        let ips: Vec<IpAddr> = ["127.0.0.2", "127.0.0.1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let (_s, used) = connect(&ips, port, Instant::now() + Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(used, SocketAddr::new("127.0.0.1".parse().unwrap(), port));
    }
}
