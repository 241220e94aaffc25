//! Where the memory of the first image-reference parse goes (docs/performance.md, "Idle RSS and
//! the reference grammar").
//!
//! ```sh
//! cargo run --release --example reference_memory
//! ```
//!
//! Each case runs in a fresh child process and prints how much anonymous memory (`RssAnon`)
//! the process gained and how long the step took:
//! - `oci-spec`: the first `oci_spec::distribution::Reference` parse, which builds the crate's
//!   reference regex (what pullprobe does when it loads its config);
//! - `tag-unicode`: only the tag part of the distribution grammar, `[\w][\w.-]{0,127}`, with
//!   `\w` Unicode-aware as the regex crate reads it by default;
//! - `tag-ascii`: the same with `\w` ASCII-only, as Go's RE2 reads it in distribution/reference.
//!
//! For the two tag cases it also prints the heap the built regex keeps (`memory_usage`). A
//! bounded repeat copies its class 127 times, and the Unicode `\w` class is a large UTF-8
//! automaton, so that one class accounts for almost all of the cost.

use std::process::Command;
use std::time::Instant;

use regex_automata::meta;
use regex_automata::util::syntax;

const CASES: [&str; 3] = ["oci-spec", "tag-unicode", "tag-ascii"];

fn rss_anon_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon in /proc/self/status")
}

fn tag_regex(unicode: bool) -> meta::Regex {
    meta::Regex::builder()
        .syntax(syntax::Config::new().unicode(unicode))
        // oci-spec builds its regex with a 20 MiB size limit.
        .configure(meta::Config::new().nfa_size_limit(Some(20 << 20)))
        .build(r"^[\w][\w.-]{0,127}$")
        .expect("the tag grammar compiles")
}

fn run(case: &str) {
    let before = rss_anon_kib();
    let start = Instant::now();
    let kept = match case {
        "oci-spec" => {
            let r: oci_spec::distribution::Reference = "nginx".parse().expect("valid reference");
            assert_eq!(r.repository(), "library/nginx");
            None
        }
        "tag-unicode" | "tag-ascii" => {
            let re = tag_regex(case == "tag-unicode");
            assert!(re.is_match("v1.2.3"));
            Some(re.memory_usage())
        }
        other => panic!("unknown case {other}"),
    };
    let took = start.elapsed();
    let grown = rss_anon_kib().saturating_sub(before);
    let kept = kept.map_or_else(|| "-".to_owned(), |b| format!("{:.2} MB", b as f64 / 1e6));
    println!(
        "| {case} | {:.2} MB | {kept} | {:.1} ms |",
        (grown * 1024) as f64 / 1e6,
        took.as_secs_f64() * 1e3
    );
}

fn main() {
    if let Some(case) = std::env::args().nth(1) {
        run(&case);
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    println!("| case | RssAnon gained | heap kept by the regex | time |");
    println!("|---|---|---|---|");
    for case in CASES {
        let status = Command::new(&exe).arg(case).status().expect("run a case");
        assert!(status.success(), "case {case} failed");
    }
}
