//! CRI-O's path, proven against the real client: containers/image (here through Debian's
//! `skopeo inspect --raw`, skopeo 1.9.3 / containers/image 5.23) and `pullprobe --check` with
//! `node.runtime: crio` read the same `registries.conf` and drop-in directory, and must agree
//! on whether the pull succeeds and on the source that answered.
//!
//! containers/image's flow differs from containerd's (`docker/docker_client.go`,
//! `docker_image_src.go`): a `GET /v2/` ping first (200 or 401, anything else fails the
//! source), credentials from the ping's challenge only, the manifest by `GET`, mirrors in order
//! then the primary location, whose error is the verdict when all fail; kubelet's credentials
//! are dropped for a source on another registry. Which source skopeo used is read from the
//! fakes, as in `mirrors.rs`: the last one that received a manifest request.

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use crate::docker_registry::require_tool;
use crate::support::registry::{Auth, FakeRegistry, StatusOverride};
use crate::support::{init, write_docker_config};

const USER: &str = "crio-user";
const PASSWORD: &str = "crio-Pa55word";

struct Verdict {
    ok: bool,
    reason: String,
    message: String,
    endpoint: String,
    /// The JSON `endpoints`: each source asked, as labelled, and whether it answered.
    endpoints: Vec<(String, bool)>,
}

/// One fixture's files: registries.conf, its drop-in directory, a docker config.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(conf: &str) -> Files {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("registries.conf"), conf).unwrap();
        // skopeo reads drop-ins from $HOME/.config/containers/registries.conf.d only.
        std::fs::create_dir_all(dir.path().join("home/.config/containers/registries.conf.d"))
            .unwrap();
        Files { dir }
    }

    fn conf(&self) -> std::path::PathBuf {
        self.dir.path().join("registries.conf")
    }

    fn dropins(&self) -> std::path::PathBuf {
        self.dir
            .path()
            .join("home/.config/containers/registries.conf.d")
    }

    /// skopeo's `$HOME`: the directory whose `.config/containers/registries.conf.d` is
    /// [`Files::dropins`].
    fn home(&self) -> std::path::PathBuf {
        self.dir.path().join("home")
    }

    /// Writes the drop-in `name` (a `*.conf` file) where both readers look for it.
    fn dropin(self, name: &str, conf: &str) -> Files {
        std::fs::write(self.dropins().join(name), conf).unwrap();
        self
    }
}

fn refused() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

fn label(f: &FakeRegistry) -> String {
    format!("127.0.0.1:{}", f.addr.port())
}

async fn pullprobe_crio(files: &Files, image: &str, creds: bool) -> Verdict {
    let config = files.dir.path().join("pullprobe.yaml");
    let mut yaml = format!(
        "timeout: 8s\nnode:\n  runtime: crio\n  crio:\n    registries_conf: {}\n    registries_conf_d: {}\n",
        files.conf().display(),
        files.dropins().display()
    );
    if creds {
        let path = files.dir.path().join("auth.json");
        // kubelet's key: the image's registry.
        let key = image.split('/').next().unwrap();
        write_docker_config(&path, key, USER, PASSWORD);
        yaml += &format!("docker_config: {}\n", path.display());
    }
    yaml += &format!("targets:\n  - image: {image}\n");
    std::fs::write(&config, yaml).unwrap();
    let r = &crate::support::check_json(&config, &[]).await;
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    Verdict {
        ok: r["ok"].as_bool().unwrap(),
        reason: s(&r["reason"]),
        message: s(&r["message"]),
        endpoint: s(&r["endpoint"]),
        endpoints: r["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (s(&e["endpoint"]), e["ok"].as_bool().unwrap()))
            .collect(),
    }
}

/// `skopeo --registries-conf F inspect --raw docker://IMAGE` with the drop-ins under a private
/// HOME; `--retry-times 0` so the exit is containers/image's own answer.
async fn skopeo(files: &Files, image: &str, creds: bool) -> (bool, String) {
    let mut cmd = Command::new("skopeo");
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", files.home())
        .arg("--registries-conf")
        .arg(files.conf())
        .args(["inspect", "--raw", "--retry-times", "0"]);
    if creds {
        cmd.arg("--creds").arg(format!("{USER}:{PASSWORD}"));
    } else {
        cmd.arg("--no-creds");
    }
    cmd.arg(format!("docker://{image}"));
    let out = tokio::task::spawn_blocking(move || {
        let child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("skopeo starts");
        child.wait_with_output().unwrap()
    });
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("skopeo finishes")
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The fakes that received a manifest request, in the given order.
fn manifest_asked(fakes: &[(&str, &FakeRegistry)]) -> Vec<String> {
    fakes
        .iter()
        .filter(|(_, f)| {
            f.requests()
                .iter()
                .any(|r| r.path_and_query.contains("/manifests/"))
        })
        .map(|(l, _)| (*l).to_owned())
        .collect()
}

struct Case<'a> {
    name: &'a str,
    files: Files,
    image: String,
    creds: bool,
    fakes: Vec<(&'a str, &'a FakeRegistry)>,
    /// `Ok(source)`: both pull from it; `Err(reason)`: both fail, pullprobe says `reason`.
    want: Result<&'a str, &'a str>,
}

async fn agree(case: Case<'_>) -> Verdict {
    for (_, f) in &case.fakes {
        f.forget_requests();
    }
    let pp = pullprobe_crio(&case.files, &case.image, case.creds).await;
    let pp_asked = manifest_asked(&case.fakes);
    for (_, f) in &case.fakes {
        f.forget_requests();
    }
    let (sk_ok, sk_err) = skopeo(&case.files, &case.image, case.creds).await;
    let sk_asked = manifest_asked(&case.fakes);
    let name = case.name;
    assert_eq!(
        pp.ok, sk_ok,
        "{name}: pullprobe says {} ({}: {}), skopeo says {sk_ok}: {sk_err}",
        pp.ok, pp.reason, pp.message
    );
    assert_eq!(pp_asked, sk_asked, "{name}: manifest requests");
    match case.want {
        Ok(source) => {
            assert!(pp.ok, "{name}: {}: {}", pp.reason, pp.message);
            assert_eq!(pp.endpoint, source, "{name}");
            assert_eq!(sk_asked.last().map(String::as_str), Some(source), "{name}");
        }
        Err(reason) => assert_eq!(
            pp.reason, reason,
            "{name}: {}\nskopeo: {sk_err}",
            pp.message
        ),
    }
    assert!(!pp.message.contains(PASSWORD), "{name}: {}", pp.message);
    pp
}

/// registries.conf mirror chains, the ping, blocked registries and credentials per source,
/// each with skopeo's verdict.
#[tokio::test(flavor = "multi_thread")]
async fn crio_verdicts_agree_with_skopeo() {
    if require_tool("skopeo").is_none() {
        return;
    }
    init();
    let up = FakeRegistry::builder()
        .repo("team/app", &["1"])
        .start()
        .await;
    let m1 = FakeRegistry::builder().repo("other", &["1"]).start().await;
    let m2 = FakeRegistry::builder()
        .repo("mirrored/team/app", &["1"])
        .start()
        .await;
    let no_ping = FakeRegistry::builder()
        .v2_status(StatusOverride::Status(404))
        .repo("team/app", &["1"])
        .start()
        .await;
    let locked = FakeRegistry::builder()
        .auth(Auth::Basic {
            user: USER.into(),
            pass: PASSWORD.into(),
        })
        .repo("team/app", &["1"])
        .start()
        .await;
    let (up_l, m1_l, m2_l, np_l, lk_l) = (
        label(&up),
        label(&m1),
        label(&m2),
        label(&no_ping),
        label(&locked),
    );
    let dead = refused();
    let all = || {
        vec![
            (m1_l.as_str(), &m1),
            (m2_l.as_str(), &m2),
            (np_l.as_str(), &no_ping),
            (lk_l.as_str(), &locked),
            (up_l.as_str(), &up),
        ]
    };
    let entry = |mirrors: &[String], extra: &str| {
        let mut s = format!(
            "[[registry]]\nprefix = \"upstream.test\"\nlocation = \"{up_l}\"\ninsecure = true\n{extra}"
        );
        for m in mirrors {
            s += &format!("[[registry.mirror]]\nlocation = \"{m}\"\ninsecure = true\n");
        }
        s
    };

    agree(Case {
        name: "a refused mirror, then the primary location",
        files: Files::new(&entry(std::slice::from_ref(&dead), "")),
        image: "upstream.test/team/app:1".into(),
        creds: false,
        fakes: all(),
        want: Ok(&up_l),
    })
    .await;

    // A CRI-O source is labelled by its location (host[:port]/namespace): the answer is
    // `{m2}/mirrored`, not the bare host.
    let m2_mirrored = format!("{m2_l}/mirrored");
    agree(Case {
        name: "a mirror without the repository, then one under a rewritten path",
        files: Files::new(&entry(&[m1_l.clone(), m2_mirrored.clone()], "")),
        image: "upstream.test/team/app:1".into(),
        creds: false,
        fakes: vec![
            (m1_l.as_str(), &m1),
            (m2_mirrored.as_str(), &m2),
            (up_l.as_str(), &up),
        ],
        want: Ok(&m2_mirrored),
    })
    .await;

    // `PullSourcesFromReference`: two sources on one host:port are two sources (issue #12);
    // each keeps its own `endpoint` label instead of the later overwriting the earlier.
    let m2_missing = format!("{m2_l}/missing");
    let pp = agree(Case {
        name: "two mirrors on one host under different namespaces",
        files: Files::new(&entry(&[m2_missing.clone(), m2_mirrored.clone()], "")),
        image: "upstream.test/team/app:1".into(),
        creds: false,
        fakes: vec![(m2_mirrored.as_str(), &m2), (up_l.as_str(), &up)],
        want: Ok(&m2_mirrored),
    })
    .await;
    assert_eq!(
        pp.endpoints,
        [(m2_missing.clone(), false), (m2_mirrored.clone(), true)]
    );
    let up_mirrored = format!("{up_l}/mirrored");
    let pp = agree(Case {
        name: "a mirror on the location's host",
        files: Files::new(&entry(std::slice::from_ref(&up_mirrored), "")),
        image: "upstream.test/team/app:1".into(),
        creds: false,
        fakes: vec![(up_l.as_str(), &up)],
        want: Ok(&up_l),
    })
    .await;
    assert_eq!(pp.endpoints, [(up_mirrored, false), (up_l.clone(), true)]);

    agree(Case {
        name: "a digest-only mirror is skipped for a tag",
        files: Files::new(&entry(
            std::slice::from_ref(&m2_mirrored),
            "mirror-by-digest-only = true\n",
        )),
        image: "upstream.test/team/app:1".into(),
        creds: false,
        fakes: all(),
        want: Ok(&up_l),
    })
    .await;

    // containers/image pings /v2/ first; containerd never does (the same registry pulls there).
    agree(Case {
        name: "a mirror whose /v2/ answers 404 fails its ping",
        files: Files::new(&entry(std::slice::from_ref(&np_l), "")),
        image: "upstream.test/team/app:1".into(),
        creds: false,
        fakes: all(),
        want: Ok(&up_l),
    })
    .await;

    // The primary location's error is the verdict.
    let pp = agree(Case {
        name: "every source fails: the primary's missing tag is the verdict",
        files: Files::new(&entry(std::slice::from_ref(&dead), "")),
        image: "upstream.test/team/app:2".into(),
        creds: false,
        fakes: all(),
        want: Err("manifest_unknown"),
    })
    .await;
    assert_eq!(pp.endpoint, up_l);

    // `blocked` is checked against each source's rewritten reference (`newDockerClient`): a
    // blocked prefix whose location rewrites the name does not block; blocking the location does.
    agree(Case {
        name: "blocked applies to the rewritten reference, not the name pulled",
        files: Files::new(&entry(&[], "blocked = true\n")),
        image: "upstream.test/team/app:1".into(),
        creds: false,
        fakes: all(),
        want: Ok(&up_l),
    })
    .await;
    agree(Case {
        name: "a blocked registry",
        files: Files::new(&format!(
            "[[registry]]\nlocation = \"{up_l}\"\ninsecure = true\nblocked = true\n"
        )),
        image: format!("{up_l}/team/app:1"),
        creds: false,
        fakes: all(),
        want: Err("connect_error"),
    })
    .await;

    // kubelet's credentials are for upstream.test: CRI-O does not send them to a mirror on
    // another registry, so the mirror that needs them refuses and the primary serves.
    agree(Case {
        name: "credentials are not sent to a mirror on another registry",
        files: Files::new(&entry(std::slice::from_ref(&lk_l), "")),
        image: "upstream.test/team/app:1".into(),
        creds: true,
        fakes: all(),
        want: Ok(&up_l),
    })
    .await;
    // kubelet's credentials are for the name pulled; CRI-O drops them for any source on
    // another registry — a location rewrite included (`newImageSourceAttempt`).
    agree(Case {
        name: "credentials are dropped for a location on another registry",
        files: Files::new(&format!(
            "[[registry]]\nprefix = \"upstream.test\"\nlocation = \"{lk_l}\"\ninsecure = true\n"
        )),
        image: "upstream.test/team/app:1".into(),
        creds: true,
        fakes: all(),
        want: Err("auth_required"),
    })
    .await;
    let own = |creds: bool| Case {
        name: if creds {
            "the registry needs kubelet's credentials and gets them"
        } else {
            "the registry needs credentials and there are none"
        },
        files: Files::new(&format!(
            "[[registry]]\nlocation = \"{lk_l}\"\ninsecure = true\n"
        )),
        image: format!("{lk_l}/team/app:1"),
        creds,
        fakes: all(),
        want: if creds {
            Ok(&lk_l)
        } else {
            Err("auth_required")
        },
    };
    agree(own(true)).await;
    agree(own(false)).await;

    let sent = |f: &FakeRegistry| {
        use base64::Engine as _;
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
        );
        f.requests()
            .iter()
            .any(|r| r.authorization.as_deref() == Some(basic.as_str()))
    };
    assert!(!sent(&locked), "skopeo sent the credentials to the mirror");
    locked.forget_requests();
    let files = Files::new(&entry(std::slice::from_ref(&lk_l), ""));
    pullprobe_crio(&files, "upstream.test/team/app:1", true).await;
    assert!(
        !sent(&locked),
        "pullprobe sent the credentials to the mirror"
    );
    assert!(!locked.requests().is_empty());
}

/// containers/image `makeRequestToResolvedURL`: a 429 is retried after `Retry-After` (or a
/// doubling delay from 2 s) while the probe's deadline allows; a delay past it is reported at
/// once as `rate_limited`.
#[tokio::test]
async fn crio_retries_429_with_backoff_within_the_deadline() {
    init();
    let probe = |retry_after: u64| async move {
        let reg = FakeRegistry::builder()
            .repo("app", &["1"])
            .manifest_status(StatusOverride::TooManyRequestsFirst {
                times: 1,
                retry_after,
            })
            .start()
            .await;
        let addr = label(&reg);
        let files = Files::new(&format!(
            "[[registry]]\nlocation = \"{addr}\"\ninsecure = true\n"
        ));
        let yaml = format!(
            "timeout: 5s\nnode:\n  runtime: crio\n  crio:\n    registries_conf: {}\n    registries_conf_d: {}\ntargets:\n  - image: {addr}/app:1\n",
            files.conf().display(),
            files.dropins().display()
        );
        let config = pullprobe::config::Config::from_yaml("t.yaml", &yaml, &files.home()).unwrap();
        let started = std::time::Instant::now();
        let r = pullprobe::probe::Prober::from_config(&config)
            .probe(&config.targets[0])
            .await;
        let manifests = reg
            .requests()
            .iter()
            .filter(|r| r.path_and_query.contains("/manifests/"))
            .count();
        (r, started.elapsed(), manifests)
    };

    let (r, took, manifests) = probe(1).await;
    assert!(r.ok(), "{:?}", r.failure);
    assert_eq!(manifests, 2);
    assert!(took >= Duration::from_millis(900), "{took:?}");

    let (r, took, manifests) = probe(30).await;
    let f = r.failure.expect("429");
    assert_eq!(
        f.reason,
        pullprobe::outcome::Reason::RateLimited,
        "{}",
        f.message
    );
    assert_eq!(manifests, 1);
    assert!(took < Duration::from_secs(4), "{took:?}");
}

/// containers/image `detectPropertiesHelper`: an `insecure` source that speaks plain HTTP fails
/// the HTTPS ping (its answer is not a TLS handshake) and is pinged again over HTTP; the pull
/// uses that plain connection, so the report carries no TLS facts from the failed attempt.
#[tokio::test]
async fn detect_properties_helper_plain_http_source_reports_no_tls() {
    init();
    let reg = FakeRegistry::builder().repo("app", &["1"]).start().await;
    let addr = label(&reg);
    let files = Files::new(&format!(
        "[[registry]]\nlocation = \"{addr}\"\ninsecure = true\n"
    ));
    let yaml = format!(
        "timeout: 5s\nnode:\n  runtime: crio\n  crio:\n    registries_conf: {}\n    registries_conf_d: {}\ntargets:\n  - image: {addr}/app:1\n",
        files.conf().display(),
        files.dropins().display()
    );
    let config = pullprobe::config::Config::from_yaml("t.yaml", &yaml, &files.home()).unwrap();
    let r = pullprobe::probe::Prober::from_config(&config)
        .probe(&config.targets[0])
        .await;
    assert!(r.ok(), "{:?}", r.failure);
    assert_eq!(r.tls, None, "the failed HTTPS ping's handshake is reported");
    assert_eq!(r.address, Some(reg.addr));
}

/// containers/image `tryUpdatingCache` / `updateWithConfigurationFrom`: each `*.conf` of
/// registries.conf.d is loaded after the main file, and a drop-in's `[[registry]]` replaces
/// the main file's entry with the same prefix whole — its location and its mirrors; the main
/// file's mirrors are not kept.
///
/// How skopeo is pointed at the drop-ins: `--registries-conf` sets only
/// `SystemRegistriesConfPath` (as `CONTAINERS_REGISTRIES_CONF` would), and skopeo has no flag
/// for `SystemRegistriesConfDirPath`; `newConfigWrapperWithHomeDir` then reads the system
/// `/etc/containers/registries.conf.d` and the user `$HOME/.config/containers/registries.conf.d`,
/// so the fixture's drop-in goes in the private HOME's, and pullprobe's `registries_conf_d` names
/// that same directory. (Debian's system directory holds only `shortnames.conf` aliases, which
/// a fully-qualified name never consults.)
#[tokio::test(flavor = "multi_thread")]
async fn sysregistriesv2_dropin_overrides_agree_with_skopeo() {
    if require_tool("skopeo").is_none() {
        return;
    }
    init();
    let up = FakeRegistry::builder()
        .repo("team/app", &["1"])
        .start()
        .await;
    let m1 = FakeRegistry::builder().repo("other", &["1"]).start().await;
    let m2 = FakeRegistry::builder()
        .repo("mirrored/team/app", &["1"])
        .start()
        .await;
    let (up_l, m1_l, m2_l) = (label(&up), label(&m1), label(&m2));
    let m2_mirrored = format!("{m2_l}/mirrored");
    let dead = refused();
    let entry = |location: &str, mirror: Option<&str>| {
        let mut s = format!(
            "[[registry]]\nprefix = \"upstream.test\"\nlocation = \"{location}\"\ninsecure = true\n"
        );
        if let Some(m) = mirror {
            s += &format!("[[registry.mirror]]\nlocation = \"{m}\"\ninsecure = true\n");
        }
        s
    };
    let fakes = || {
        vec![
            (m1_l.as_str(), &m1),
            (m2_mirrored.as_str(), &m2),
            (up_l.as_str(), &up),
        ]
    };

    // The main file's mirror would serve; the drop-in's (without the repository) replaces it,
    // so the primary location answers and the main file's mirror is never asked.
    let pp = agree(Case {
        name: "a drop-in replaces the main file's mirror",
        files: Files::new(&entry(&up_l, Some(&m2_mirrored)))
            .dropin("50-mirror.conf", &entry(&up_l, Some(&m1_l))),
        image: "upstream.test/team/app:1".into(),
        creds: false,
        fakes: fakes(),
        want: Ok(&up_l),
    })
    .await;
    assert_eq!(
        pp.endpoints,
        [(m1_l.clone(), false), (up_l.clone(), true)],
        "the drop-in's mirror, then the location"
    );

    // The other way round: the drop-in's mirror serves.
    agree(Case {
        name: "a drop-in's mirror serves",
        files: Files::new(&entry(&up_l, Some(&m1_l)))
            .dropin("50-mirror.conf", &entry(&up_l, Some(&m2_mirrored))),
        image: "upstream.test/team/app:1".into(),
        creds: false,
        fakes: fakes(),
        want: Ok(&m2_mirrored),
    })
    .await;

    // The drop-in's entry is whole: its refused location and no mirror fail the pull, though
    // the main file's mirror and location would serve.
    let pp = agree(Case {
        name: "a drop-in's entry replaces the location and drops the mirrors",
        files: Files::new(&entry(&up_l, Some(&m2_mirrored)))
            .dropin("50-mirror.conf", &entry(&dead, None)),
        image: "upstream.test/team/app:1".into(),
        creds: false,
        fakes: fakes(),
        want: Err("connect_refused"),
    })
    .await;
    assert_eq!(pp.endpoints, [(dead.clone(), false)]);

    // Drop-ins load in name order; the last one's entry stands.
    agree(Case {
        name: "of two drop-ins for one prefix, the later in name order wins",
        files: Files::new(&entry(&dead, None))
            .dropin("10-first.conf", &entry(&up_l, Some(&m1_l)))
            .dropin("20-second.conf", &entry(&up_l, Some(&m2_mirrored))),
        image: "upstream.test/team/app:1".into(),
        creds: false,
        fakes: fakes(),
        want: Ok(&m2_mirrored),
    })
    .await;
}
