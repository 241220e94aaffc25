//! The messages a person reads from the `pullprobe` binary when the config, an argument or a
//! flag is wrong: every problem at once, each with its file, line, key, what is wrong and a
//! self-contained fix, and exit status 2; and `--check NAME` probing a configured target (0
//! when it is ok, 1 when it fails).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::support::registry::{Auth, FakeRegistry};
use crate::support::{Run, closed_port, pullprobe};

const REPO: &str = "library/alpine";

/// Runs `pullprobe` off the async runtime.
async fn run(args: Vec<OsString>) -> Run {
    tokio::task::spawn_blocking(move || pullprobe(args))
        .await
        .unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn check_args(config: &Path, extra: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["--check".into(), "--config.file".into(), config.into()];
    args.extend(extra.iter().map(OsString::from));
    args
}

#[tokio::test(flavor = "multi_thread")]
async fn three_typos_are_reported_together_with_lines_and_suggestions() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "c.yaml",
        "timeot: 10s\ntargets:\n  - imge: nginx\n    plain_htp: true\n",
    );
    let out = run(check_args(&config, &[])).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(out.stdout, "");
    let want = format!(
        "pullprobe: invalid configuration in {} (3 problems):\n  \
         line 1: timeot: unknown key; did you mean `timeout`?\n    \
         fix: rename `timeot` to `timeout` (the keys of the top level are interval, timeout, dns, docker_config, targets, node, pods)\n  \
         line 3: targets[0].imge: unknown key; did you mean `image`?\n    \
         fix: rename `imge` to `image` (the keys of a target are name, image, docker_config, plain_http, tls, check_platform)\n  \
         line 4: targets[0].plain_htp: unknown key; did you mean `plain_http`?\n    \
         fix: rename `plain_htp` to `plain_http` (the keys of a target are name, image, docker_config, plain_http, tls, check_platform)\n",
        config.display()
    );
    assert_eq!(out.stderr, want);
}

#[tokio::test(flavor = "multi_thread")]
async fn library_text_never_reaches_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    // 250001 values: the YAML crate's node budget, said in words.
    let mut big = String::from("targets:\n");
    for _ in 0..125_001 {
        big.push_str("- {image: a}\n");
    }
    let big = write(dir.path(), "big.yaml", &big);
    let durations = write(
        dir.path(),
        "d.yaml",
        "interval: -5m\ntimeout: yes\ntargets: [{image: nginx}]\n",
    );
    write(
        dir.path(),
        "ca.pem",
        "-----BEGIN CERTIFICATE-----\nMIIB!!!\n-----END CERTIFICATE-----\n",
    );
    let bad_ca = write(
        dir.path(),
        "ca.yaml",
        "targets:\n  - image: registry.example.com/app\n    tls:\n      ca_file: ca.pem\n",
    );
    let cases = [
        (
            big,
            vec![
                "has more than 250000 values (keys, values and list items); pullprobe reads at most 250000",
            ],
        ),
        (
            durations,
            vec![
                "line 1: interval: `-5m` is negative; a duration is a positive number with a unit",
                "line 2: timeout: `yes` is not a duration (a number with a unit: s, m or h)",
                "fix: write a positive number with a unit, like `timeout: 10s`, `5m` or `1h30m`",
            ],
        ),
        (
            bad_ca,
            vec![
                "line 4: targets[0].tls.ca_file: ",
                "ca.pem is not a valid PEM file: line 2 of a certificate block has characters that are not base64",
                "openssl x509 -inform der -in",
            ],
        ),
    ];
    for (config, wants) in cases {
        let out = run(check_args(&config, &[])).await;
        assert_eq!(out.code, 2, "{}", out.stderr);
        let heading = format!("pullprobe: invalid configuration in {}", config.display());
        assert!(out.stderr.starts_with(&heading), "{}", out.stderr);
        for want in wants {
            assert!(out.stderr.contains(want), "{want}\n{}", out.stderr);
        }
        for leak in [
            "budget",
            "Nodes {",
            "expected number",
            "InvalidCharacter",
            "base64 decode error",
            "<input>",
            "README",
        ] {
            assert!(!out.stderr.contains(leak), "{leak}\n{}", out.stderr);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ca_block_that_is_not_a_certificate_is_a_config_error_not_an_untrusted_registry() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "ca.pem",
        "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
    );
    let config = write(
        dir.path(),
        "c.yaml",
        "node: {runtime: none}\ntargets:\n  - image: 127.0.0.1:1/app\n    tls: {ca_file: ca.pem}\n",
    );
    let out = run(check_args(&config, &[])).await;
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "line 4: targets[0].tls.ca_file: {}: the certificate block at line 1 is not an X.509 certificate",
            dir.path().join("ca.pem").display()
        )),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("tls_untrusted"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn check_by_target_name_probes_that_target_and_refuses_ambiguity() {
    let ok = FakeRegistry::builder()
        .auth(Auth::None)
        .repo(REPO, &["latest"])
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "c.yaml",
        &format!(
            "node: {{runtime: none}}\ntimeout: 5s\ntargets:\n\
             \x20 - name: local mirror\n    image: 127.0.0.1:{}/{REPO}:latest\n    plain_http: true\n\
             \x20 - name: alpine\n    image: 127.0.0.1:{}/{REPO}:latest\n    plain_http: true\n\
             \x20 - name: closed one\n    image: {}/app:v1\n    plain_http: true\n",
            ok.addr.port(),
            ok.addr.port(),
            closed_port()
        ),
    );
    let both = write(
        dir.path(),
        "both.yaml",
        &format!(
            "node: {{runtime: none}}\ntimeout: 5s\ntargets:\n\
             \x20 - name: alpine\n    image: 127.0.0.1:{}/{REPO}:latest\n    plain_http: true\n\
             \x20 - name: hub alpine\n    image: alpine\n",
            ok.addr.port(),
        ),
    );
    // A name that is no image reference: that target, with its plain_http.
    let out = run(check_args(&config, &["local mirror"])).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("local mirror"), "{}", out.stdout);
    assert!(out.stdout.contains("1 of 1 targets ok"), "{}", out.stdout);
    // A failing target by name: exit 1.
    let out = run(check_args(&config, &["closed one"])).await;
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("closed one"), "{}", out.stdout);
    // A bare target name is the target, not docker.io/library/alpine:latest.
    let out = run(check_args(&config, &["alpine"])).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("1 of 1 targets ok"), "{}", out.stdout);
    // `alpine` is the target and also the image of the target `hub alpine`.
    let out = run(check_args(&both, &["alpine"])).await;
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        out.stderr,
        format!(
            "pullprobe: invalid image argument `alpine`: it is both the name of the configured target `alpine` (image 127.0.0.1:{port}/{REPO}:latest) and the image docker.io/library/alpine:latest\n  \
             fix: say which: for the target, give its image, `pullprobe --check 127.0.0.1:{port}/{REPO}:latest`; for the other image, write it in full, `pullprobe --check docker.io/library/alpine:latest`\n",
            port = ok.addr.port()
        )
    );
    // Neither: headed as an image argument, not as the configuration.
    let out = run(check_args(&config, &["Local Mirror!"])).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.starts_with("pullprobe: invalid image argument `Local Mirror!`: it is not the name of a configured target, and not an image reference: "),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("invalid configuration"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn flags_of_the_other_mode_are_usage_errors() {
    for (args, want) in [
        (
            vec!["--output", "json"],
            "error: --output applies only to --check; without --check pullprobe runs the agent",
        ),
        (
            vec!["--check", "--web.listen-address", "127.0.0.1:1"],
            "error: --web.listen-address applies only to the agent (pullprobe without --check)",
        ),
        (
            vec!["--config.watch-interval", "bogus"],
            "`bogus` is not a duration (a number with a unit: s, m or h); write it like 5s, 1m or 1h30m, or 0s to turn the check off",
        ),
        (
            // As its own argument: the parser sees it, not clap's "unexpected argument '-5'".
            vec!["--config.watch-interval", "-5s"],
            "'--config.watch-interval <DURATION>': `-5s` is negative; a duration is a positive number with a unit",
        ),
        (
            vec!["--check", "--probe.concurrency", "-1"],
            "'--probe.concurrency <N>': \"-1\" is not a whole number from 1 to 1024",
        ),
    ] {
        let out = run(args.iter().map(OsString::from).collect()).await;
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(want), "{args:?}: {}", out.stderr);
    }
}

/// A kubelet CredentialProviderConfig with a wrong type or cut short: the key, the position and
/// what is wrong in words, never serde's `invalid type: string "yes", expected a sequence`.
#[tokio::test(flavor = "multi_thread")]
async fn messages_credential_provider_config_type_errors_are_in_words() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("bin")).unwrap();
    let head = r#"{"apiVersion":"kubelet.config.k8s.io/v1","kind":"CredentialProviderConfig","providers":[{"name":"#;
    let yaml_head = "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n  - name: ecr\n";
    for (file, text, want) in [
        (
            "cp.json",
            format!(r#"{head}"ecr","matchImages":"yes"}}]}}"#),
            r#"(json): at line 1, column 121 (at the key "matchImages"): must be a list, not the text "yes""#,
        ),
        (
            "cp.json",
            head.to_owned(),
            "(json): the JSON ends before it is complete at line 1, column 96 (at the key \"name\"): the file is cut short",
        ),
        (
            "cp.yaml",
            format!("{yaml_head}    matchImages: \"yes\"\n"),
            "(yaml): line 5, column 18: matchImages: must be a list",
        ),
        (
            "cp.yaml",
            format!("{yaml_head}    bogus: 1\n"),
            "(yaml): line 5, column 5: \"bogus\" is not a known key here",
        ),
    ] {
        let provider = write(dir.path(), file, &text);
        let config = write(
            dir.path(),
            "c.yaml",
            &format!(
                "node:\n  kubelet:\n    credential_provider_config: {}\n    credential_provider_bin_dir: {}\ntargets:\n  - image: nginx\n",
                provider.display(),
                dir.path().join("bin").display()
            ),
        );
        let out = run(check_args(&config, &[])).await;
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert!(out.stderr.contains(want), "{text}\n{}", out.stderr);
        for library in [
            "invalid type",
            "expected a sequence",
            "EOF while",
            "unknown field",
        ] {
            assert!(!out.stderr.contains(library), "{}", out.stderr);
        }
    }
}

/// Every file pullprobe reads (config, CA bundle, docker config.json, kubeconfig, web config
/// certificate) that cannot be read is named with the problem in words, without the standard
/// library's `(os error 2)`.
#[tokio::test(flavor = "multi_thread")]
async fn messages_unreadable_files_say_why_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("gone");
    let config = write(
        dir.path(),
        "c.yaml",
        &format!(
            "docker_config: {gone}/config.json\ntargets:\n  - image: nginx\n    tls:\n      ca_file: {gone}/ca.pem\n  - image: alpine\n    docker_config: {dir}\n",
            gone = gone.display(),
            dir = dir.path().display()
        ),
    );
    let out = run(check_args(&config, &[])).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    for want in [
        format!(
            "docker_config: cannot read {}/config.json: no such file",
            gone.display()
        ),
        format!(
            "targets[0].tls.ca_file: cannot read {}/ca.pem: no such file",
            gone.display()
        ),
        format!(
            "targets[1].docker_config: cannot read {}: it is a directory",
            dir.path().display()
        ),
    ] {
        assert!(out.stderr.contains(&want), "{want}\n{}", out.stderr);
    }
    let missing = run(vec![
        "--check".into(),
        "--config.file".into(),
        gone.clone().into(),
    ])
    .await;
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    assert!(
        missing
            .stderr
            .contains("(file): cannot read the file: no such file"),
        "{}",
        missing.stderr
    );
    let kube = run(vec![
        "--check".into(),
        "--kubeconfig".into(),
        gone.join("kubeconfig").into(),
        "--pod".into(),
        "ns/pod".into(),
    ])
    .await;
    assert!(
        kube.stderr.contains(&format!(
            "cannot read the kubeconfig {}: no such file",
            gone.join("kubeconfig").display()
        )),
        "{}",
        kube.stderr
    );
    let web = write(
        dir.path(),
        "web.yaml",
        &format!(
            "tls_server_config:\n  cert_file: {g}/c.pem\n  key_file: {g}/k.pem\n",
            g = gone.display()
        ),
    );
    let valid = write(dir.path(), "ok.yaml", "targets:\n  - image: nginx\n");
    let agent = run(vec![
        "--config.file".into(),
        valid.into(),
        "--web.config.file".into(),
        web.into(),
    ])
    .await;
    assert!(
        agent.stderr.contains(&format!(
            "tls_server_config.cert_file: cannot read {}/c.pem: no such file",
            gone.display()
        )),
        "{}",
        agent.stderr
    );
    for o in [&out, &missing, &kube, &agent] {
        assert!(!o.stderr.contains("os error"), "{}", o.stderr);
        assert!(!o.stderr.contains("Os {"), "{}", o.stderr);
    }
}

/// The agent's web config reads its certificate as the config reads a CA file: a block with
/// characters that are not base64 is named by its line, not `base64 decode error:
/// InvalidCharacter(33)`.
#[tokio::test(flavor = "multi_thread")]
async fn messages_web_config_certificate_with_bad_base64_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write(
        dir.path(),
        "c.pem",
        "-----BEGIN CERTIFICATE-----\nMIIB!!!AAAA\n-----END CERTIFICATE-----\n",
    );
    let web = write(
        dir.path(),
        "web.yaml",
        &format!(
            "tls_server_config:\n  cert_file: {c}\n  key_file: {c}\n",
            c = cert.display()
        ),
    );
    let valid = write(dir.path(), "ok.yaml", "targets:\n  - image: nginx\n");
    let out = run(vec![
        "--config.file".into(),
        valid.into(),
        "--web.config.file".into(),
        web.into(),
    ])
    .await;
    let want = format!(
        "tls_server_config.cert_file: {} is not a valid PEM file: line 2 of a certificate block has characters that are not base64",
        cert.display()
    );
    assert!(out.stderr.contains(&want), "{}", out.stderr);
    assert!(!out.stderr.contains("InvalidCharacter"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("base64 decode error"),
        "{}",
        out.stderr
    );
}

/// A docker config.json whose credentials live in a credential helper (`credsStore`, no
/// `auths`): the message says kubelet and pullprobe never run helpers, and what to do instead.
#[tokio::test(flavor = "multi_thread")]
async fn messages_docker_config_with_only_a_credential_helper_says_it_is_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let docker = write(dir.path(), "config.json", r#"{"credsStore": "desktop"}"#);
    let config = write(
        dir.path(),
        "c.yaml",
        &format!(
            "targets:\n  - image: nginx\n    docker_config: {}\n",
            docker.display()
        ),
    );
    let out = run(check_args(&config, &[])).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    for want in [
        "line 3: targets[0].docker_config: ",
        "it has no \"auths\" object; it names credsStore \"desktop\", but kubelet never runs docker credential helpers (it ignores credsStore and credHelpers), and neither does pullprobe",
        "Put the registry's credentials in \"auths\"",
    ] {
        assert!(out.stderr.contains(want), "{want}\n{}", out.stderr);
    }
}

/// A docker config.json cut short: named, said in words, without serde_json's `EOF while
/// parsing an object at line 1 column 5` and without any of the file's text.
#[tokio::test(flavor = "multi_thread")]
async fn messages_truncated_docker_config_is_named_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let docker = write(
        dir.path(),
        "config.json",
        r#"{"auths": {"r.io": {"password": "a:hunter2"#,
    );
    let config = write(
        dir.path(),
        "c.yaml",
        &format!(
            "targets:\n  - image: nginx\n    docker_config: {}\n",
            docker.display()
        ),
    );
    let out = run(check_args(&config, &[])).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    let want = format!(
        "line 3: targets[0].docker_config: {} is not a docker config.json / .dockerconfigjson document: the JSON ends before it is complete at line 1, column 42: the file is cut short",
        docker.display()
    );
    assert!(out.stderr.contains(&want), "{}", out.stderr);
    for library in ["EOF while parsing", "hunter2"] {
        assert!(!out.stderr.contains(library), "{}", out.stderr);
    }
}
