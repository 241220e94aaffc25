//! Table tests of the hosts-directory reader against containerd's own rules
//! (`config/hosts.go`, `hosts_test.go` cases taken as facts).

use std::time::Duration;

use super::*;

fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().expect("has a parent")).expect("mkdir");
    std::fs::write(&p, text).expect("write");
    p
}

fn ca_pem() -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).expect("cert").pem()
}

fn plan_for(root: &Path, host: &str) -> EndpointPlan {
    HostsDirs::new(&root.display().to_string()).plan(host)
}

fn summary(plan: &EndpointPlan) -> Vec<String> {
    plan.endpoints
        .iter()
        .map(|e| {
            format!(
                "{} pull={} resolve={} fallback={} skip={} upstream={}",
                e,
                e.capabilities.pull,
                e.capabilities.resolve,
                e.http_fallback,
                e.tls.insecure_skip_verify,
                e.upstream
            )
        })
        .collect()
}

// hosts.go `hostDirectory` / `hostPaths`.
#[test]
fn host_directories_are_looked_up_as_containerd_does() {
    assert_eq!(host_directory("mirror.io:5000"), "mirror.io_5000_");
    assert_eq!(host_directory("docker.io"), "docker.io");
    assert_eq!(host_directory("[fd00::1]:5000"), "[fd00::1]_5000_");
    let root = Path::new("/r");
    assert_eq!(
        host_paths(root, "reg:5000"),
        vec![
            PathBuf::from("/r/reg_5000_"),
            PathBuf::from("/r/reg:5000"),
            PathBuf::from("/r/_default")
        ]
    );
    assert_eq!(
        host_paths(root, "docker.io"),
        vec![PathBuf::from("/r/docker.io"), PathBuf::from("/r/_default")]
    );

    // `hostDirFromRoots`: the first root that has a directory wins, `_default` included.
    let a = tempfile::tempdir().expect("tmp");
    let b = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(a.path().join("_default")).expect("mkdir");
    std::fs::create_dir_all(b.path().join("reg_5000_")).expect("mkdir");
    let dirs = HostsDirs::new(&format!("{}:{}", a.path().display(), b.path().display()));
    assert_eq!(
        dirs.host_dir("reg:5000").expect("ok"),
        Some(a.path().join("_default"))
    );
    let dirs = HostsDirs::new(&format!("{}::{}", b.path().display(), a.path().display()));
    assert_eq!(dirs.roots.len(), 2);
    assert_eq!(
        dirs.host_dir("reg:5000").expect("ok"),
        Some(b.path().join("reg_5000_"))
    );
}

// `ConfigureHosts` without a host directory.
#[test]
fn defaults_without_a_hosts_directory() {
    let empty = tempfile::tempdir().expect("tmp");
    let s = |h: &str| summary(&plan_for(empty.path(), h));
    assert_eq!(
        s("docker.io"),
        [
            "https://registry-1.docker.io/v2 pull=true resolve=true fallback=false skip=false upstream=true"
        ]
    );
    assert_eq!(
        s("ghcr.io"),
        ["https://ghcr.io/v2 pull=true resolve=true fallback=false skip=false upstream=true"]
    );
    // Loopback (2.x): 443 or no port HTTPS unverified; 80 plain HTTP; any other port HTTPS
    // unverified with the HTTP fallback.
    assert_eq!(
        s("localhost:5000"),
        ["https://localhost:5000/v2 pull=true resolve=true fallback=true skip=true upstream=true"]
    );
    assert_eq!(
        s("127.0.0.1"),
        ["https://127.0.0.1/v2 pull=true resolve=true fallback=false skip=true upstream=true"]
    );
    assert_eq!(
        s("[::1]:443"),
        ["https://[::1]:443/v2 pull=true resolve=true fallback=false skip=true upstream=true"]
    );
    assert_eq!(
        s("127.0.0.1:80"),
        ["http://127.0.0.1:80/v2 pull=true resolve=true fallback=false skip=false upstream=true"]
    );
    assert_eq!(
        s("10.0.0.1:5000"),
        ["https://10.0.0.1:5000/v2 pull=true resolve=true fallback=false skip=false upstream=true"]
    );
    assert!(!plan_for(empty.path(), "ghcr.io").from_files);
}

// `parseHostsFile` / `getSortedHosts` / `parseHostConfig` (hosts_test.go `TestParseHostFile`'s
// shape: hosts in file order, the server last, paths and capabilities).
#[test]
fn hosts_toml_in_file_order_then_the_server() {
    let root = tempfile::tempdir().expect("tmp");
    write(
        root.path(),
        "docker.io/hosts.toml",
        r#"server = "https://registry-1.docker.io"

[host."https://mirror.registry"]
  capabilities = ["pull"]
  ca = "mirror.crt"
  skip_verify = false
  [host."https://mirror.registry".header]
    x-custom-2 = ["value1", "value2"]

[host."https://mirror-bak.registry/us"]
  capabilities = ["pull"]
  skip_verify = true

[host."http://mirror.registry"]
  capabilities = ["pull"]

[host."https://test-1.registry"]
  capabilities = ["pull", "resolve", "push"]
  dial_timeout = "1m30s"

[host."https://test-3.registry"]
  client = ["client.pem", ["/etc/certs/client.cert", "/etc/certs/client.key"]]
  override_path = true

[host."https://noprefixnoncompliant.registry"]
  override_path = true
"#,
    );
    write(root.path(), "docker.io/mirror.crt", &ca_pem());
    let dir = root.path().join("docker.io");
    let file = dir.join("hosts.toml");
    let hosts =
        parse_hosts_file(&dir, &file, &std::fs::read(&file).expect("read")).expect("parses");
    let got: Vec<(String, String, String)> = hosts
        .iter()
        .map(|h| (h.scheme.clone(), h.host.clone(), h.path.clone()))
        .collect();
    let want = [
        ("https", "mirror.registry", "/v2"),
        ("https", "mirror-bak.registry", "/us/v2"),
        ("http", "mirror.registry", "/v2"),
        ("https", "test-1.registry", "/v2"),
        ("https", "test-3.registry", ""),
        ("https", "noprefixnoncompliant.registry", ""),
        ("https", "registry-1.docker.io", "/v2"),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(hosts[0].ca, vec![dir.join("mirror.crt")]);
    assert_eq!(
        hosts[0].headers,
        vec![
            ("x-custom-2".to_owned(), "value1".to_owned()),
            ("x-custom-2".to_owned(), "value2".to_owned())
        ]
    );
    assert_eq!(
        hosts[0].capabilities,
        Some(Capabilities {
            pull: true,
            resolve: false,
            push: false
        })
    );
    assert_eq!(hosts[1].skip_verify, Some(true));
    assert_eq!(hosts[3].dial_timeout, Some(Duration::from_secs(90)));
    assert_eq!(
        hosts[4].client,
        vec![
            (dir.join("client.pem"), None),
            (
                PathBuf::from("/etc/certs/client.cert"),
                Some(PathBuf::from("/etc/certs/client.key"))
            )
        ]
    );
    assert_eq!(hosts[6].capabilities, None);
    assert!(
        hosts[0]
            .source
            .contains("[host.\"https://mirror.registry\"] (line 3)")
    );
}

// `ConfigureHosts` over a hosts.toml: mirrors first, the default upstream when no `server`,
// TLS per host, the HTTP fallback of an http:// host with TLS settings.
#[test]
fn endpoints_from_a_hosts_toml() {
    let root = tempfile::tempdir().expect("tmp");
    write(root.path(), "docker.io/ca.pem", &ca_pem());
    write(
        root.path(),
        "docker.io/hosts.toml",
        r#"
[host."http://mirror.internal:5000"]
  capabilities = ["pull", "resolve"]
  ca = "ca.pem"
[host."mirror2.internal"]
  capabilities = ["pull"]
"#,
    );
    let plan = plan_for(root.path(), "docker.io");
    assert!(plan.error.is_none(), "{:?}", plan.error);
    assert!(plan.from_files);
    assert_eq!(
        summary(&plan),
        [
            "https://mirror.internal:5000/v2 pull=true resolve=true fallback=true skip=false upstream=false",
            "https://mirror2.internal/v2 pull=true resolve=false fallback=false skip=false upstream=false",
            "https://registry-1.docker.io/v2 pull=true resolve=true fallback=false skip=false upstream=true",
        ]
    );
    assert_eq!(plan.endpoints[0].tls.extra_roots.len(), 1);
    assert!(plan.endpoints[0].tls.configured);
    assert!(!plan.endpoints[1].serves(false));
    assert!(plan.endpoints[1].serves(true));
    assert_eq!(plan.endpoints[0].label(), "mirror.internal:5000");
}

// `loadHostDir`: a file containerd cannot decode is ignored (logged), Docker's cert files used.
#[test]
fn an_undecodable_hosts_toml_is_a_warning_with_its_line_and_the_defaults_apply() {
    let root = tempfile::tempdir().expect("tmp");
    write(
        root.path(),
        "reg.example:5000/hosts.toml",
        "server = \"https://reg.example:5000\"\n\n[host.\"https://m\"]\ncapabilities = [\"pull\", \"fly\"]\n",
    );
    let plan = plan_for(root.path(), "reg.example:5000");
    assert_eq!(
        summary(&plan),
        [
            "https://reg.example:5000/v2 pull=true resolve=true fallback=false skip=false upstream=true"
        ]
    );
    assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
    let w = &plan.warnings[0];
    assert!(
        w.contains("hosts.toml: line 3: [host.\"https://m\"]: unknown capability \"fly\""),
        "{w}"
    );
    assert!(w.contains("ignores the file"), "{w}");

    write(
        root.path(),
        "reg.example:5000/hosts.toml",
        "server = \"https://reg.example:5000\"\n[host.\"https://m\"\ncapabilities = [\"pull\"]\n",
    );
    let plan = plan_for(root.path(), "reg.example:5000");
    let w = &plan.warnings[0];
    assert!(w.contains("line 2: TOML syntax error"), "{w}");
    assert!(!w.contains("TomlError") && !w.contains("Error {"), "{w}");
}

// `loadCertFiles`: Docker's layout when there is no hosts.toml.
#[test]
fn docker_certificate_files_without_hosts_toml() {
    let root = tempfile::tempdir().expect("tmp");
    write(root.path(), "reg:5000/ca.crt", &ca_pem());
    let plan = plan_for(root.path(), "reg:5000");
    assert_eq!(plan.endpoints.len(), 1);
    assert_eq!(plan.endpoints[0].tls.extra_roots.len(), 1);
    assert!(plan.warnings.is_empty());
}

// `updateTLSConfigFromHost`: a CA file that cannot be read or holds no certificate fails the
// pull ("unable to load CA cert").
#[test]
fn an_unusable_ca_file_fails_the_pull_naming_it() {
    let root = tempfile::tempdir().expect("tmp");
    write(
        root.path(),
        "reg/hosts.toml",
        "[host.\"https://m\"]\nca = \"missing.pem\"\n",
    );
    let plan = plan_for(root.path(), "reg");
    let e = plan.error.expect("an error");
    assert!(
        e.contains("missing.pem") && e.contains("no such file"),
        "{e}"
    );
    write(root.path(), "reg/missing.pem", "not a certificate");
    let e = plan_for(root.path(), "reg").error.expect("an error");
    assert!(
        e.contains("holds no PEM certificate") && e.contains("openssl x509 -inform der"),
        "{e}"
    );
}

// `updateTLSConfigFromHost` / Go `tls.X509KeyPair`: a `client` entry whose certificate file
// holds a block that decodes but is not a certificate fails the pull, naming the file.
#[test]
fn a_client_entry_that_is_not_a_certificate_fails_the_pull_naming_it() {
    let root = tempfile::tempdir().expect("tmp");
    let key = rcgen::KeyPair::generate().expect("key");
    write(root.path(), "reg/client.key", &key.serialize_pem());
    // Base64 that decodes, but to no certificate.
    write(
        root.path(),
        "reg/client.cert",
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    );
    write(
        root.path(),
        "reg/hosts.toml",
        "[host.\"https://m\"]\nclient = [[\"client.cert\", \"client.key\"]]\n",
    );
    let e = plan_for(root.path(), "reg").error.expect("an error");
    let cert = root.path().join("reg/client.cert");
    assert!(
        e.contains(&format!(
            "the first certificate block of {} is not an X.509 certificate",
            cert.display()
        )) && e.contains("hosts.toml"),
        "{e}"
    );
    // A real certificate with that key loads.
    let params = rcgen::CertificateParams::new(vec!["client".to_owned()]).expect("params");
    write(
        root.path(),
        "reg/client.cert",
        &params.self_signed(&key).expect("cert").pem(),
    );
    let plan = plan_for(root.path(), "reg");
    assert!(plan.error.is_none(), "{:?}", plan.error);
    assert_eq!(plan.endpoints[0].tls.client_certificates.len(), 1);
}

#[test]
fn go_path_clean_and_durations() {
    assert_eq!(go_path_clean("/us//v2/"), "/us/v2");
    assert_eq!(go_path_clean("/a/../b/./c"), "/b/c");
    assert_eq!(go_path_clean("/.."), "/");
    assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_go_duration("300ms"), Some(Duration::from_millis(300)));
    assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
    assert_eq!(parse_go_duration("5"), None);
    assert_eq!(parse_go_duration("5 s"), None);
    assert_eq!(parse_go_duration(""), None);
    assert_eq!(port_part("[::1]:5000"), Some("5000"));
    assert_eq!(port_part("host"), None);
    assert_eq!(port_part("host:80"), Some("80"));
    assert_eq!(host_part("[::1]:5000"), "[::1]");
    assert_eq!(host_part("localhost:5000"), "localhost");
}

// containerd#10027: 1.6/1.7 `getSortedHosts` fail on a file without `[host]` tables, and
// `loadHostDir` then ignores the file.
#[test]
fn a_hosts_toml_without_host_tables_is_ignored_as_containerd_1_7_does() {
    let root = tempfile::tempdir().expect("tmp");
    write(
        root.path(),
        "docker.io/hosts.toml",
        "# a pull-through cache\nserver = \"https://cache.internal\"\n",
    );
    let plan = plan_for(root.path(), "docker.io");
    assert_eq!(plan.endpoints.len(), 1);
    assert_eq!(plan.endpoints[0].host, "registry-1.docker.io");
    let w = &plan.warnings[0];
    assert!(
        w.contains("hosts.toml: line 2: the file has no [host.\"…\"] table"),
        "{w}"
    );
    assert!(w.contains("containerd#10027"), "{w}");
}
