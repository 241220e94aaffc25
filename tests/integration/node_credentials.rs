//! The credentials kubelet would pass, end to end through the engine: the node's `config.json`
//! (found by kubelet's search from `node.kubelet.root_dir`), credential-provider plugins (small
//! shell scripts speaking `credentialprovider.kubelet.k8s.io/v1`), and containerd handing them
//! to a mirror too (kubelet sends them without a server address).

use std::path::{Path, PathBuf};

use pullprobe::config::Config;
use pullprobe::outcome::{Phase, Reason};
use pullprobe::probe::{ProbeReport, Prober};

use crate::support::containerd::HostsDir;
use crate::support::registry::{Auth, FakeRegistry};
use crate::support::{init, write_docker_config};

const USER: &str = "node-user";
const PASSWORD: &str = "node-Pa55word";

async fn probe(dir: &Path, yaml: &str) -> ProbeReport {
    init();
    let config =
        Config::from_yaml("test.yaml", yaml, dir).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let prober = Prober::from_config(&config);
    pullprobe::check::probe_all(&prober, config.targets.clone())
        .await
        .remove(0)
}

/// A plugin named `name` in `bin` that runs `script` with /bin/sh (a symlink, so parallel
/// tests never exec a file being written), and the provider config entry for it.
fn plugin(bin: &Path, scripts: &Path, name: &str, match_image: &str, script: &str) -> String {
    std::fs::create_dir_all(bin).unwrap();
    std::fs::create_dir_all(scripts).unwrap();
    let link = bin.join(name);
    if !link.exists() {
        std::os::unix::fs::symlink("/bin/sh", &link).unwrap();
    }
    let path = scripts.join(format!("{name}.sh"));
    std::fs::write(&path, script).unwrap();
    format!(
        "  - name: {name}\n    matchImages: [\"{match_image}\"]\n    defaultCacheDuration: 0s\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n    args: [\"{}\"]\n",
        path.display()
    )
}

fn provider_config(dir: &Path, providers: &[String]) -> PathBuf {
    let path = dir.join("credential-providers.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n{}",
            providers.concat()
        ),
    )
    .unwrap();
    path
}

fn answering(key: &str, user: &str, pass: &str) -> String {
    format!(
        "cat >/dev/null\nprintf '%s' '{{\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\"kind\":\"CredentialProviderResponse\",\"cacheKeyType\":\"Registry\",\"auth\":{{\"{key}\":{{\"username\":\"{user}\",\"password\":\"{pass}\"}}}}}}'\n"
    )
}

async fn basic_registry() -> FakeRegistry {
    FakeRegistry::builder()
        .auth(Auth::Basic {
            user: USER.into(),
            pass: PASSWORD.into(),
        })
        .repo("app", &["1"])
        .start()
        .await
}

/// kubelet `ReadDockerConfigFile`: `<root-dir>/config.json` gives the node's credentials.
#[tokio::test]
async fn the_nodes_config_json_is_used_as_kubelet_finds_it() {
    let reg = basic_registry().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("kubelet");
    std::fs::create_dir_all(&root).unwrap();
    let host = format!("127.0.0.1:{}", reg.addr.port());
    let image = format!("{host}/app:1");
    let yaml = format!(
        "node:\n  runtime: none\n  kubelet:\n    root_dir: {}\ntargets:\n  - image: {image}\n    plain_http: true\n",
        root.display()
    );
    let r = probe(dir.path(), &yaml).await;
    assert_eq!(r.reason(), Reason::AuthRequired, "{:?}", r.failure);

    write_docker_config(&root.join("config.json"), &host, USER, PASSWORD);
    let r = probe(dir.path(), &yaml).await;
    assert!(r.ok(), "{:?}", r.failure);

    // A wrong password names the node file and key, never the password.
    write_docker_config(&root.join("config.json"), &host, USER, "wrong-secret");
    let r = probe(dir.path(), &yaml).await;
    let f = r.failure.expect("fails");
    assert_eq!(f.reason, Reason::AuthFailed);
    assert!(
        f.message.contains(&format!(
            "credentials from {}, key \"{host}\"",
            root.join("config.json").display()
        )),
        "{}",
        f.message
    );
    assert!(!f.message.contains("wrong-secret"), "{}", f.message);

    // An invalid config.json is skipped (kubelet goes on to the next path) and said.
    std::fs::write(root.join("config.json"), "{not json").unwrap();
    let r = probe(dir.path(), &yaml).await;
    assert_eq!(r.reason(), Reason::AuthRequired);
    assert!(
        r.warnings.iter().any(|w| w.contains("config.json")),
        "{:?}",
        r.warnings
    );
}

/// A plugin's answer authenticates the pull; a failing plugin is the failure (`auth_failed`,
/// phase `auth`) with its stderr's first line and never its stdout; a hanging one is killed
/// at the probe's deadline.
#[tokio::test]
async fn credential_provider_plugins_as_kubelet_runs_them() {
    let reg = basic_registry().await;
    let dir = tempfile::tempdir().unwrap();
    let host = format!("127.0.0.1:{}", reg.addr.port());
    let image = format!("{host}/app:1");
    let bin = dir.path().join("bin");
    let scripts = dir.path().join("scripts");
    let run = |config: &Path, timeout: &str| {
        format!(
            "timeout: {timeout}\nnode:\n  runtime: none\n  kubelet:\n    root_dir: {}\n    credential_provider_config: {}\n    credential_provider_bin_dir: {}\ntargets:\n  - image: {image}\n    plain_http: true\n",
            dir.path().join("no-kubelet").display(),
            config.display(),
            bin.display()
        )
    };

    let ok = provider_config(
        dir.path(),
        &[plugin(
            &bin,
            &scripts,
            "good",
            &host,
            &answering(&host, USER, PASSWORD),
        )],
    );
    let r = probe(dir.path(), &run(&ok, "5s")).await;
    assert!(r.ok(), "{:?}", r.failure);

    let failing = provider_config(
        dir.path(),
        &[plugin(
            &bin,
            &scripts,
            "broken",
            &host,
            "cat >/dev/null\necho 'stdout-secret-token'\necho 'AccessDenied: the node role may not read the registry' >&2\necho 'second line' >&2\nexit 3\n",
        )],
    );
    let r = probe(dir.path(), &run(&failing, "5s")).await;
    let f = r.failure.expect("fails");
    assert_eq!(
        (f.phase, f.reason),
        (Phase::Auth, Reason::AuthFailed),
        "{}",
        f.message
    );
    assert!(
        f.message.contains("credential provider plugin broken"),
        "{}",
        f.message
    );
    assert!(
        f.message
            .contains("AccessDenied: the node role may not read the registry"),
        "{}",
        f.message
    );
    assert!(!f.message.contains("stdout-secret-token"), "{}", f.message);
    assert!(!f.message.contains("second line"), "{}", f.message);

    let garbage = provider_config(
        dir.path(),
        &[plugin(
            &bin,
            &scripts,
            "garbage",
            &host,
            "cat >/dev/null\necho '{\"password\":\"leaked-secret\"'\n",
        )],
    );
    let r = probe(dir.path(), &run(&garbage, "5s")).await;
    let f = r.failure.expect("fails");
    assert_eq!(f.reason, Reason::AuthFailed, "{}", f.message);
    assert!(!f.message.contains("leaked-secret"), "{}", f.message);

    let hanging = provider_config(
        dir.path(),
        &[plugin(&bin, &scripts, "hangs", &host, "exec sleep 30\n")],
    );
    let started = std::time::Instant::now();
    let r = probe(dir.path(), &run(&hanging, "2s")).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(!r.ok());
    let f = r.failure.expect("fails");
    assert_eq!(
        (f.phase, f.reason),
        (Phase::Auth, Reason::Timeout),
        "{}",
        f.message
    );
    assert!(f.message.contains("plugin"), "{}", f.message);
}

/// containerd's CRI hands kubelet's credentials to every host of the list (kubelet sends them
/// without a server address): a mirror that asks for Basic gets the node's credentials for
/// the registry.
#[tokio::test]
async fn kubelet_credentials_reach_a_mirror() {
    let mirror = basic_registry().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("kubelet");
    std::fs::create_dir_all(&root).unwrap();
    write_docker_config(&root.join("config.json"), "upstream.test", USER, PASSWORD);
    let hosts = HostsDir::new();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    hosts.hosts_toml(
        "upstream.test",
        &format!(
            "server = \"http://{dead}\"\n[host.\"http://127.0.0.1:{}\"]\n",
            mirror.addr.port()
        ),
    );
    let yaml = format!(
        "node:\n  runtime: containerd\n  containerd:\n    config_path: {}\n  kubelet:\n    root_dir: {}\ntargets:\n  - image: upstream.test/app:1\n",
        hosts.path().display(),
        root.display()
    );
    let r = probe(dir.path(), &yaml).await;
    assert!(r.ok(), "{:?} {:?}", r.failure, r.endpoints);
    assert_eq!(r.endpoint, format!("127.0.0.1:{}", mirror.addr.port()));
}
