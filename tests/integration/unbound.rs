//! End to end against a real resolver: Debian's `unbound` on loopback as `dns.nameservers`,
//! answering from local zones. The engine must tell an address, NXDOMAIN, no records and
//! REFUSED apart, exactly as with the in-process responder.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::docker_registry::{require_tool, run_check};

struct Unbound(Child);

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_udp_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn dig_ready(port: u16) -> bool {
    // A raw query for "ready.test. A" over UDP; any answer means unbound is serving.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["ready", "test"] {
        q.push(u8::try_from(label.len()).unwrap());
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    sock.send_to(&q, ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 512];
    sock.recv_from(&mut buf).is_ok()
}

#[test]
fn unbound_answers_are_classified() {
    let Some(bin) = require_tool("unbound") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.path().join("unbound.conf");
    std::fs::write(
        &conf,
        format!(
            "server:\n  interface: 127.0.0.1\n  port: {port}\n  do-ip6: no\n  do-daemonize: no\n  username: \"\"\n  chroot: \"\"\n\
             \x20 directory: \"{d}\"\n  pidfile: \"\"\n  use-syslog: no\n  logfile: \"\"\n  verbosity: 0\n  module-config: \"iterator\"\n\
             \x20 access-control: 127.0.0.0/8 allow\n\
             \x20 local-zone: \"test.\" static\n\
             \x20 local-data: \"ready.test. A 127.0.0.1\"\n\
             \x20 local-data: \"registry.test. A 127.0.0.1\"\n\
             \x20 local-data: \"txtonly.test. TXT hello\"\n\
             \x20 local-zone: \"refused.example.\" refuse\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .args(["-d", "-c"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unbound starts");
    let _guard = Unbound(child);
    let started = Instant::now();
    while !dig_ready(port) {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "unbound did not answer on port {port}"
        );
    }

    let config = dir.path().join("pullprobe.yaml");
    std::fs::write(
        &config,
        format!("timeout: 5s\ndns:\n  nameservers: [\"127.0.0.1:{port}\"]\ntargets:\n  - image: registry.test:{closed}/app\n    plain_http: true\n"),
    )
    .unwrap();
    let images = [
        format!("registry.test:{closed}/app"),
        format!("missing.test:{closed}/app"),
        format!("txtonly.test:{closed}/app"),
        format!("registry.refused.example:{closed}/app"),
    ];
    let refs: Vec<&str> = images.iter().map(String::as_str).collect();
    let run = run_check(&config, &refs, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let got: Vec<(String, String)> = run.json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["phase"].as_str().unwrap_or("none").to_owned(),
                r["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want = [
        ("connect", "connect_refused"), // resolved through unbound, then nothing listens
        ("dns", "dns_nxdomain"),
        ("dns", "dns_no_records"),
        ("dns", "dns_servfail"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    assert_eq!(got, want, "{}", run.stdout);

    // What a person reads: each answer from the real resolver, the nameserver and its source
    // in the message, and a remedy that names the same nameserver (never /etc/resolv.conf).
    let ns = format!("127.0.0.1:{port}");
    let results = run.json["results"].as_array().unwrap();
    let expected = [
        (
            format!("NXDOMAIN from {ns}"),
            format!("served by the nameserver {ns} (from dns.nameservers)"),
        ),
        (
            format!("NOERROR without addresses from {ns}"),
            format!("in the zone the nameserver {ns} (from dns.nameservers) answers from"),
        ),
        (
            format!("(REFUSED from {ns})"),
            format!("(`dig @127.0.0.1 -p {port} registry.refused.example`)"),
        ),
    ];
    for (r, (answer, remedy_part)) in results[1..].iter().zip(expected) {
        let message = r["message"].as_str().unwrap();
        let remedy = r["remedy"].as_str().unwrap();
        assert!(message.contains(&answer), "{message}");
        assert!(
            message.contains(&format!("; nameservers {ns} from dns.nameservers; ")),
            "{message}"
        );
        assert!(remedy.contains(&remedy_part), "{remedy}");
        assert!(!remedy.contains("resolv.conf"), "{remedy}");
    }
}
