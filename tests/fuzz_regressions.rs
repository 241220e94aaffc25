//! Replays the fuzzers' findings and seeds without a fuzzer.
//!
//! Every file in `fuzz/regressions/<target>/` (an input that once crashed a target, kept after
//! the fix) and in `fuzz/seeds/<target>/` goes through the same check function the fuzz target
//! runs (`fuzz/src/lib.rs`, compiled in here), so `cargo test` keeps each finding fixed.
//! See docs/hardening.md.

use std::path::{Path, PathBuf};

#[path = "../fuzz/src/lib.rs"]
mod checks;

/// Runs `check` on every file of the target's regression and seed directories; returns how many.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files: Vec<PathBuf> = ["regressions", "seeds"]
        .iter()
        .filter_map(|kind| std::fs::read_dir(root.join(kind).join(target)).ok())
        .flatten()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panic!("{} fails the {target} check", file.display());
        }
    }
    files.len()
}

#[test]
fn challenge() {
    assert!(replay("challenge", checks::challenge) > 0);
}

#[test]
fn ratelimit() {
    assert!(replay("ratelimit", checks::ratelimit) > 0);
}

#[test]
fn reference() {
    assert!(replay("reference", checks::reference) > 0);
}

#[test]
fn credentials() {
    assert!(replay("credentials", checks::credentials) > 0);
}

#[test]
fn config() {
    assert!(replay("config", checks::config) > 0);
}
