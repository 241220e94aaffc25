//! A node whose own runtime configuration fails its pulls: a hosts.toml whose `ca` file is
//! missing, or whose `client` file is not a certificate. containerd's `ConfigureHosts` fails
//! before any registry is asked, so `pullprobe --check` must say phase `node`, reason
//! `node_config_invalid`, name the file, and exit 1 — not send anyone to the registry's
//! certificate (`tls_untrusted`, as it did).
//!
//! Each case is held against the real client (STYLE.md §0.8): `ctr --hosts-dir` on the same
//! tree fails too, and on the same tree with the file fixed both pull, so the failure is the
//! file's and nothing else in the fixture's.

use std::path::{Path, PathBuf};

use crate::differential::have_ctr;
use crate::support::containerd::{CtrOpts, HostsDir, ctr_fetch_async};
use crate::support::registry::FakeRegistry;
use crate::support::tls::{TestCa, Validity, server_config};
use crate::support::{closed_port, init, pullprobe};

/// The namespace of the image: no DNS, only the hosts of hosts.toml are dialled.
const NS: &str = "node-config.test";

/// `pullprobe --check --output json` with `hosts` as containerd's hosts directory: the exit
/// code and the one result.
async fn check(hosts: &Path, image: &str) -> (i32, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pullprobe.yaml");
    std::fs::write(
        &config,
        format!(
            "timeout: 8s\nnode:\n  runtime: containerd\n  containerd:\n    config_path: {}\ntargets:\n  - image: {image}\n",
            hosts.display()
        ),
    )
    .unwrap();
    let args = vec![
        "--check".to_owned(),
        "--output".to_owned(),
        "json".to_owned(),
        "--config.file".to_owned(),
        config.display().to_string(),
    ];
    let run = tokio::task::spawn_blocking(move || pullprobe(args))
        .await
        .unwrap();
    let r = run.json["results"][0].clone();
    assert!(r.is_object(), "no result: {}\n{}", run.stdout, run.stderr);
    (run.code, r)
}

/// A TLS registry serving `app:1` under a CA of its own, and the hosts.toml that sends `NS`
/// to it (the `server` refuses, so only the `[host]` entry can serve the pull), with `extra`
/// as the host's TLS lines.
struct Fixture {
    hosts: HostsDir,
    ca: TestCa,
    _registry: FakeRegistry,
    mirror: String,
    dead: String,
}

impl Fixture {
    async fn new() -> Fixture {
        let ca = TestCa::new("node-config CA");
        let registry = FakeRegistry::builder()
            .tls(server_config(&ca.leaf(&["127.0.0.1"], Validity::Valid)))
            .repo("app", &["1"])
            .start()
            .await;
        Fixture {
            hosts: HostsDir::new(),
            mirror: format!("127.0.0.1:{}", registry.addr.port()),
            dead: closed_port().to_string(),
            ca,
            _registry: registry,
        }
    }

    fn hosts_toml(&self, tls_lines: &str) -> PathBuf {
        self.hosts.hosts_toml(
            NS,
            &format!(
                "server = \"http://{}\"\n[host.\"https://{}\"]\n{tls_lines}",
                self.dead, self.mirror
            ),
        )
    }

    fn ca_line(&self) -> String {
        let ca = self.hosts.file(NS, "ca.pem", self.ca.ca_pem().as_bytes());
        format!("  ca = \"{}\"\n", ca.display())
    }
}

/// pullprobe and ctr on the fixture's tree: both fail, pullprobe saying the node's file and
/// `what` is wrong with it, ctr with an error that starts with `ctr_says`.
async fn both_fail_on_the_node(f: &Fixture, case: &str, file: &Path, what: &str, ctr_says: &str) {
    let image = format!("{NS}/app:1");
    let (code, r) = check(f.hosts.path(), &image).await;
    assert_eq!(code, 1, "{case}: {r:#}");
    assert_eq!(r["phase"], "node", "{case}: {r:#}");
    assert_eq!(r["reason"], "node_config_invalid", "{case}: {r:#}");
    let message = r["message"].as_str().unwrap();
    assert!(
        message.contains(&file.display().to_string()) && message.contains(what),
        "{case}: {message}"
    );
    assert!(message.contains("hosts.toml"), "{case}: {message}");
    let remedy = r["remedy"].as_str().unwrap();
    assert!(remedy.contains("not at fault"), "{case}: {remedy}");
    let ctr = ctr_fetch_async(&image, &CtrOpts::default().hosts_dir(f.hosts.path())).await;
    assert!(
        !ctr.ok && ctr.error().starts_with(ctr_says),
        "{case}: ctr: {ctr}"
    );
}

/// pullprobe and ctr on the fixed tree: both pull through the mirror.
async fn both_pull(f: &Fixture, case: &str) {
    let image = format!("{NS}/app:1");
    let (code, r) = check(f.hosts.path(), &image).await;
    assert_eq!((code, &r["ok"]), (0, &true.into()), "{case}: {r:#}");
    assert_eq!(r["endpoint"], f.mirror.as_str(), "{case}: {r:#}");
    ctr_fetch_async(&image, &CtrOpts::default().hosts_dir(f.hosts.path()))
        .await
        .assert_ok();
}

/// `ca = "…"` naming a file that is not there: containerd "unable to read CA cert".
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_ca_file_fails_the_pull_on_the_node() {
    if !have_ctr() {
        return;
    }
    init();
    let f = Fixture::new().await;
    let missing = f.hosts.host_dir(NS).join("removed-ca.pem");
    f.hosts_toml(&format!("  ca = \"{}\"\n", missing.display()));
    both_fail_on_the_node(
        &f,
        "missing ca",
        &missing,
        "no such file",
        "unable to read CA cert",
    )
    .await;

    f.hosts_toml(&f.ca_line());
    both_pull(&f, "the CA in place").await;
}

/// `client = [[cert, key]]` whose certificate file is not a certificate: a PEM block whose
/// base64 decodes to something else (Go's `X509KeyPair` parses the leaf and refuses it), and a
/// file with no PEM block at all. The registry does not even ask for a client certificate:
/// containerd fails while loading it.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_file_that_is_not_a_certificate_fails_the_pull_on_the_node() {
    if !have_ctr() {
        return;
    }
    init();
    let f = Fixture::new().await;
    let client = f.ca.client("node-1");
    let key = f.hosts.file(NS, "client.key", client.key_pem.as_bytes());
    let client_line = |cert: &Path| {
        format!(
            "{}  client = [[\"{}\", \"{}\"]]\n",
            f.ca_line(),
            cert.display(),
            key.display()
        )
    };
    let cases: [(&str, &[u8], &str); 2] = [
        (
            "a block that is not a certificate",
            b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
            "is not an X.509 certificate",
        ),
        (
            "no PEM at all",
            b"client certificate goes here\n",
            "holds no PEM certificate",
        ),
    ];
    for (case, contents, what) in cases {
        let cert = f.hosts.file(NS, "client.cert", contents);
        f.hosts_toml(&client_line(&cert));
        both_fail_on_the_node(&f, case, &cert, what, "failed to load X509 key pair").await;
    }

    let cert = f.hosts.file(NS, "client.cert", client.cert_pem.as_bytes());
    f.hosts_toml(&client_line(&cert));
    both_pull(&f, "a real client pair").await;
}
