//! The standard `process_*` metrics every Prometheus exporter serves (client_golang's process
//! collector: the same names, types and units), read from `/proc/self` at scrape time.
//!
//! Without unsafe code there is no `sysconf`, so two constants are Linux's: clock ticks are
//! `USER_HZ` = 100 (fixed by the kernel ABI on every architecture Kubernetes runs on), and
//! resident memory comes from `VmRSS` in `/proc/self/status` (kB) rather than pages.
//! On a system without `/proc` the collector exports nothing.

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, Metric, MetricFamily, MetricType};

/// Linux `USER_HZ`: the unit of `utime`/`stime`/`starttime` in `/proc/<pid>/stat`.
const USER_HZ: f64 = 100.0;

const FAMILIES: [(&str, &str, MetricType); 7] = [
    (
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        MetricType::COUNTER,
    ),
    (
        "process_open_fds",
        "Number of open file descriptors.",
        MetricType::GAUGE,
    ),
    (
        "process_max_fds",
        "Maximum number of open file descriptors.",
        MetricType::GAUGE,
    ),
    (
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        MetricType::GAUGE,
    ),
    (
        "process_virtual_memory_max_bytes",
        "Maximum amount of virtual memory available in bytes.",
        MetricType::GAUGE,
    ),
    (
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        MetricType::GAUGE,
    ),
    (
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        MetricType::GAUGE,
    ),
];

/// What `/proc/self` says, each value when it could be read.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Sample {
    cpu_seconds: Option<f64>,
    open_fds: Option<f64>,
    max_fds: Option<f64>,
    virtual_bytes: Option<f64>,
    virtual_max_bytes: Option<f64>,
    resident_bytes: Option<f64>,
    start_time: Option<f64>,
}

/// The fields of `/proc/<pid>/stat` after the command (which may contain spaces and `)`).
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().collect())
}

/// A soft limit from `/proc/<pid>/limits`; `unlimited` is the largest value, as Go reports it.
fn limit(limits: &str, name: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with(name))?;
    let soft = line[name.len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        return Some(u64::MAX as f64);
    }
    soft.parse::<u64>().ok().map(|v| v as f64)
}

impl Sample {
    /// Parses the files' text (each `None` when it could not be read).
    pub(crate) fn parse(
        stat: Option<&str>,
        status: Option<&str>,
        limits: Option<&str>,
        proc_stat: Option<&str>,
        open_fds: Option<usize>,
    ) -> Self {
        let fields = stat.and_then(stat_fields);
        // After the command, field 3 (state) is index 0: utime 14 → 11, stime 15 → 12,
        // starttime 22 → 19, vsize 23 → 20.
        let field = |i: usize| -> Option<f64> {
            fields
                .as_ref()?
                .get(i)?
                .parse::<u64>()
                .ok()
                .map(|v| v as f64)
        };
        let boot = proc_stat.and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<u64>().ok())
        });
        let rss_kb = status.and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        });
        Sample {
            cpu_seconds: field(11).zip(field(12)).map(|(u, s)| (u + s) / USER_HZ),
            open_fds: open_fds.map(|n| n as f64),
            max_fds: limits.and_then(|l| limit(l, "Max open files")),
            virtual_bytes: field(20),
            virtual_max_bytes: limits.and_then(|l| limit(l, "Max address space")),
            resident_bytes: rss_kb.map(|kb| (kb * 1024) as f64),
            start_time: field(19)
                .zip(boot)
                .map(|(ticks, b)| b as f64 + ticks / USER_HZ),
        }
    }

    /// Reads `/proc/self` now.
    pub(crate) fn read() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        let fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            // The directory handle itself is one of the entries; Go's count includes it too.
            .map(|d| d.count());
        Sample::parse(
            read("/proc/self/stat").as_deref(),
            read("/proc/self/status").as_deref(),
            read("/proc/self/limits").as_deref(),
            read("/proc/stat").as_deref(),
            fds,
        )
    }

    fn values(&self) -> [Option<f64>; 7] {
        [
            self.cpu_seconds,
            self.open_fds,
            self.max_fds,
            self.virtual_bytes,
            self.virtual_max_bytes,
            self.resident_bytes,
            self.start_time,
        ]
    }
}

/// The collector, registered with the agent's own families.
#[derive(Debug)]
pub(crate) struct ProcessCollector {
    descs: Vec<Desc>,
}

impl ProcessCollector {
    pub(crate) fn new() -> Self {
        let descs = FAMILIES
            .iter()
            .map(|(name, help, _)| {
                Desc::new(
                    (*name).to_owned(),
                    (*help).to_owned(),
                    Vec::new(),
                    Default::default(),
                )
                .expect("valid names")
            })
            .collect();
        ProcessCollector { descs }
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let sample = Sample::read();
        FAMILIES
            .iter()
            .zip(sample.values())
            .filter_map(|((name, help, kind), value)| {
                let value = value?;
                let mut m = Metric::default();
                if *kind == MetricType::COUNTER {
                    let mut c = Counter::default();
                    c.set_value(value);
                    m.set_counter(c);
                } else {
                    let mut g = Gauge::default();
                    g.set_value(value);
                    m.set_gauge(g);
                }
                let mut f = MetricFamily::default();
                f.set_name((*name).to_owned());
                f.set_help((*help).to_owned());
                f.set_field_type(*kind);
                f.set_metric(vec![m]);
                Some(f)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read_as_client_golang_reads_them() {
        // A command with spaces and a parenthesis, as `/proc/<pid>/stat` allows.
        let stat = "4242 (pull probe) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 150 0 0 20 0 7 0 123456 52428800 1900 18446744073709551615";
        let status = "Name:\tpullprobe\nVmRSS:\t    7632 kB\nThreads:\t7\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1048576              1048576              files     \n\
                      Max address space         unlimited            unlimited            bytes     \n";
        let proc_stat = "cpu  1 2 3\nbtime 1764547200\nprocesses 9\n";
        let s = Sample::parse(
            Some(stat),
            Some(status),
            Some(limits),
            Some(proc_stat),
            Some(12),
        );
        assert_eq!(s.cpu_seconds, Some(4.0));
        assert_eq!(s.open_fds, Some(12.0));
        assert_eq!(s.max_fds, Some(1_048_576.0));
        assert_eq!(s.virtual_bytes, Some(52_428_800.0));
        assert_eq!(s.virtual_max_bytes, Some(u64::MAX as f64));
        assert_eq!(s.resident_bytes, Some(7632.0 * 1024.0));
        assert_eq!(s.start_time, Some(1_764_547_200.0 + 1234.56));
        assert_eq!(
            Sample::parse(None, None, None, None, None),
            Sample::default()
        );
    }

    #[test]
    fn this_process_is_measured() {
        let s = Sample::read();
        assert!(s.resident_bytes.is_some_and(|b| b > 1_000_000.0), "{s:?}");
        assert!(s.open_fds.is_some_and(|n| n >= 3.0), "{s:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            s.start_time
                .is_some_and(|t| t <= now + 1.0 && t > now - 86_400.0 * 365.0),
            "{s:?}"
        );
        assert_eq!(ProcessCollector::new().collect().len(), 7);
    }
}
