//! Records the git revision and the rustc version for `pullprobe_build_info`.
//!
//! `PULLPROBE_REVISION` overrides git (container builds often have no `.git`); anything that
//! cannot be found becomes "unknown" at run time.

use std::process::Command;

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PULLPROBE_REVISION");
    let revision = std::env::var("PULLPROBE_REVISION")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            // Rebuild when HEAD moves (also in a git worktree, where .git is a file).
            for path in ["HEAD", "refs/heads", "packed-refs"] {
                if let Some(p) = output("git", &["rev-parse", "--git-path", path]) {
                    println!("cargo:rerun-if-changed={p}");
                }
            }
            output("git", &["rev-parse", "--short=12", "HEAD"])
        });
    if let Some(rev) = revision.filter(|r| {
        r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    }) {
        println!("cargo:rustc-env=PULLPROBE_BUILD_REVISION={rev}");
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    // "rustc 1.92.0 (ded5c06cf 2025-12-08)" -> "1.92.0"
    if let Some(v) =
        output(&rustc, &["--version"]).and_then(|v| v.split_whitespace().nth(1).map(str::to_owned))
    {
        println!("cargo:rustc-env=PULLPROBE_BUILD_RUSTC={v}");
    }
}
