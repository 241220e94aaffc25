#!/usr/bin/env python3
"""Whole-process benchmarks of pullprobe against blackbox_exporter, side by side in one run.

Called by bench/run.sh (which builds the binaries and installs blackbox_exporter); see
docs/performance.md for what each measure means and why it is comparable. Everything talks to
127.0.0.1 only: one TLS fake registry (examples/bench_registry.rs) serves both tools, and both
trust the CA it generated.

CPU time is utime+stime from /proc/<pid>/stat, RSS is VmRSS (VmHWM for peaks) from
/proc/<pid>/status, read from outside the measured process.
"""

import argparse
import concurrent.futures
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PROBE_MODULE = "registry_head"


# ---- /proc ---------------------------------------------------------------------------------

def cpu_seconds(pid):
    """utime + stime of `pid`, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of stat(5); `rest` starts at field 3.
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def status_mb(pid, key):
    """A `kB` line of /proc/<pid>/status (VmRSS, VmHWM, RssAnon, RssFile), in MB (10^6 bytes)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024 / 1e6
    raise KeyError(key)


def rss(pid):
    return status_mb(pid, "VmRSS")


def threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


# ---- processes and HTTP ----------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path, timeout=10.0):
    """One GET on a fresh connection: (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def try_get_status(port, path):
    try:
        return get(port, path, timeout=1.0)[0]
    except OSError:
        return None


class Proc:
    """A child process that is stopped (SIGTERM, then SIGKILL) when the block ends."""

    def __init__(self, argv, **kw):
        self.argv = argv
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, **kw)
        self.pid = self.p.pid

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()

    def alive(self):
        if self.p.poll() is not None:
            sys.exit(f"{self.argv[0]} exited with {self.p.returncode}")


def wait_ok(proc, port, path, limit=30.0, every=0.001):
    """Polls `path` until it answers 200; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        proc.alive()
        if try_get_status(port, path) == 200:
            return time.monotonic() - start
        time.sleep(every)
    sys.exit(f"{proc.argv[0]}: {path} not 200 after {limit}s")


# ---- the tools -------------------------------------------------------------------------------

class Bench:
    def __init__(self, args, work):
        self.args = args
        self.work = work

    def registry(self):
        """Starts the fake registry; returns (proc, port, ca_path)."""
        proc = Proc([self.args.registry, "--dir", self.work], stdout=subprocess.PIPE, text=True)
        line = proc.p.stdout.readline()
        m = re.match(r"listening 127\.0\.0\.1:(\d+)", line)
        if not m:
            proc.stop()
            sys.exit(f"bench_registry did not start: {line!r}")
        return proc, int(m.group(1)), os.path.join(self.work, "ca.pem")

    def pullprobe(self, config=None, port=None, extra=()):
        port = port or free_port()
        argv = [self.args.pullprobe, f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
        if config:
            argv.append(f"--config.file={config}")
        return Proc(argv + list(extra)), port

    def blackbox(self, ca):
        port = free_port()
        cfg = os.path.join(self.work, "blackbox.yml")
        with open(cfg, "w") as f:
            f.write(f"""modules:
  {PROBE_MODULE}:
    prober: http
    timeout: 10s
    http:
      method: HEAD
      valid_status_codes: [200]
      fail_if_not_ssl: true
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
      tls_config:
        ca_file: {ca}
""")
        argv = [self.args.blackbox, f"--config.file={cfg}",
                f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
        return Proc(argv, stderr=subprocess.DEVNULL), port

    def targets_config(self, name, reg_port, ca, n, interval, timeout=None):
        path = os.path.join(self.work, name)
        with open(path, "w") as f:
            f.write(f"interval: {interval}\ntimeout: {timeout or interval}\ntargets:\n")
            for i in range(n):
                f.write(f"  - name: t{i:04d}\n    image: 127.0.0.1:{reg_port}/bench/r{i:04d}:latest\n"
                        f"    tls:\n      ca_file: {ca}\n")
        return path


def probe_counts(port):
    """(probes, failures, targets with at least one probe) summed from a pullprobe scrape."""
    _, body = get(port, "/metrics")
    probes = failures = done = 0
    for line in body.splitlines():
        if line.startswith("pullprobe_probes_total{"):
            v = float(line.rsplit(" ", 1)[1])
            probes += v
            done += v >= 1
        elif line.startswith("pullprobe_probe_failures_total{"):
            failures += float(line.rsplit(" ", 1)[1])
    return int(probes), int(failures), done


# ---- measures --------------------------------------------------------------------------------

def evict(path):
    """Drops `path`'s pages from the page cache (POSIX_FADV_DONTNEED; no root needed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def idle(b, ca):
    """Idle RSS: pullprobe with the embedded default config (7 targets), blackbox with one module.

    Most of an idle process's RSS is file-backed: the pages of its binary it has mapped. How many
    pages one touched instruction maps depends on how the page cache holds the file: a binary
    the linker has just written sits in large folios, and one fault maps the whole folio. So
    each process is measured twice: "as built", with the page cache as the build left it, and
    "read from disk", after dropping the binary's cached pages and one start to read it back
    in, as a node holds a binary it has run before. Both tools are measured the same way."""
    def settled(proc, port, ready_path):
        with proc:
            wait_ok(proc, port, ready_path)
            time.sleep(b.args.settle)
            proc.alive()
            return dict(rss=rss(proc.pid), anon=status_mb(proc.pid, "RssAnon"),
                        file=status_mb(proc.pid, "RssFile"), threads=threads(proc.pid))

    def both():
        return {"pullprobe": settled(*b.pullprobe(), "/-/ready"),
                "blackbox": settled(*b.blackbox(ca), "/-/healthy")}

    as_built = both()
    for path in (b.args.pullprobe, b.args.blackbox):
        evict(path)
    for proc, port, ready_path in ((*b.pullprobe(), "/-/ready"), (*b.blackbox(ca), "/-/healthy")):
        with proc:
            wait_ok(proc, port, ready_path)
    return {**as_built, "from_disk": both()}


def start_to_ready(b, ca, runs):
    out = {"pullprobe": [], "blackbox": []}
    for _ in range(runs):
        port = free_port()
        start = time.monotonic()
        pp, _ = b.pullprobe(port=port)
        with pp:
            wait_ok(pp, port, "/-/ready")
            out["pullprobe"].append(time.monotonic() - start)
        start = time.monotonic()
        bb, port = b.blackbox(ca)
        with bb:
            wait_ok(bb, port, "/-/healthy")
            out["blackbox"].append(time.monotonic() - start)
    return {k: statistics.median(v) for k, v in out.items()}


def sustained_pullprobe(b, reg_port, ca, marks):
    """The agent probing 200 targets every second; samples CPU and RSS at each mark (probes)."""
    cfg = b.targets_config("sustained.yaml", reg_port, ca, 200, "1s")
    pp, port = b.pullprobe(cfg, extra=["--config.watch-interval=0s"])
    samples = []
    with pp:
        wait_ok(pp, port, "/-/ready")
        for mark in marks:
            while True:
                pp.alive()
                cpu = cpu_seconds(pp.pid)
                probes, failures, _ = probe_counts(port)
                if probes >= mark:
                    break
                time.sleep(0.2)
            samples.append(dict(mark=mark, probes=probes, failures=failures, cpu=cpu,
                                rss=rss(pp.pid), hwm=status_mb(pp.pid, "VmHWM")))
    return samples


def blackbox_probe(conn, reg_port):
    conn.request("GET", f"/probe?module={PROBE_MODULE}&target=https://127.0.0.1:{reg_port}"
                        "/v2/bench/r0000/manifests/latest")
    body = conn.getresponse().read().decode()
    return "\nprobe_success 1\n" in "\n" + body


def sustained_blackbox(b, reg_port, ca, marks):
    """blackbox probing sequentially, one /probe request after the other (keep-alive)."""
    bb, port = b.blackbox(ca)
    samples = []
    with bb:
        wait_ok(bb, port, "/-/healthy")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        done = failures = 0
        for mark in marks:
            while done < mark:
                failures += not blackbox_probe(conn, reg_port)
                done += 1
            bb.alive()
            samples.append(dict(mark=mark, probes=done, failures=failures, cpu=cpu_seconds(bb.pid),
                                rss=rss(bb.pid), hwm=status_mb(bb.pid, "VmHWM")))
        conn.close()
    return samples


def per_probe_ms(samples):
    a, z = samples[0], samples[-1]
    return (z["cpu"] - a["cpu"]) / (z["probes"] - a["probes"]) * 1e3


def round_pullprobe(b, reg_port, ca, n):
    """The agent with n targets and a 1 s interval: time from ready until every target has a
    result, and the peak RSS until then."""
    cfg = b.targets_config("round.yaml", reg_port, ca, n, "1s")
    pp, port = b.pullprobe(cfg, extra=["--config.watch-interval=0s"])
    with pp:
        wait_ok(pp, port, "/-/ready")
        start = time.monotonic()
        while True:
            pp.alive()
            probes, failures, done = probe_counts(port)
            if done >= n:
                break
            time.sleep(0.05)
        wall = time.monotonic() - start
        return dict(wall=wall, hwm=status_mb(pp.pid, "VmHWM"), failures=failures)


def round_check(b, reg_port, ca, n):
    """`pullprobe --check` over the same n targets (at most --probe.concurrency=16 at once, the
    default 10 s timeout): wall time and peak RSS."""
    cfg = b.targets_config("check.yaml", reg_port, ca, n, "15m", "10s")
    out_path = os.path.join(b.work, "check.json")
    with open(out_path, "w") as out:
        start = time.monotonic()
        p = subprocess.Popen([b.args.pullprobe, "--check", f"--config.file={cfg}", "--output=json",
                              "--log.level=warn"], stdout=out, stdin=subprocess.DEVNULL)
        # wait4 gives this child's own rusage (ru_maxrss is its VmHWM, in kB).
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.monotonic() - start
        p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode not in (0, 1):
        sys.exit(f"--check exited with {p.returncode}")
    with open(out_path) as f:
        results = json.load(f)["results"]
    hwm = usage.ru_maxrss * 1024 / 1e6
    return dict(wall=wall, hwm=hwm, failures=sum(not x["ok"] for x in results))


def round_blackbox(b, reg_port, ca, n, concurrency):
    """n blackbox probes (one per repository) with `concurrency` requests in flight."""
    bb, port = b.blackbox(ca)
    with bb:
        wait_ok(bb, port, "/-/healthy")

        def one(i):
            _, body = get(port, f"/probe?module={PROBE_MODULE}&target=https://127.0.0.1:{reg_port}"
                                f"/v2/bench/r{i:04d}/manifests/latest", timeout=15)
            return "\nprobe_success 1\n" in "\n" + body

        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(concurrency) as ex:
            ok = list(ex.map(one, range(n)))
        wall = time.monotonic() - start
        return dict(wall=wall, hwm=status_mb(bb.pid, "VmHWM"), failures=ok.count(False))


def criterion_ms(target_dir, name):
    path = os.path.join(target_dir, "criterion", name, "new", "estimates.json")
    try:
        with open(path) as f:
            return json.load(f)["median"]["point_estimate"] / 1e6
    except OSError:
        return None


# ---- report ----------------------------------------------------------------------------------

def fmt(v, unit, digits=2):
    return "–" if v is None else f"{v:.{digits}f} {unit}"


def ratio(a, b):
    return "–" if a is None or b is None or b == 0 else f"{a / b:.2f}×"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pullprobe", required=True)
    ap.add_argument("--registry", required=True)
    ap.add_argument("--blackbox", required=True)
    ap.add_argument("--target-dir", required=True, help="CARGO_TARGET_DIR (criterion results)")
    ap.add_argument("--quick", action="store_true", help="short smoke run, not for the record")
    ap.add_argument("--json", help="also write the raw results here")
    args = ap.parse_args()
    quick = args.quick
    args.settle = 1.0 if quick else 3.0
    marks = [200, 500, 1000] if quick else [1000, 2500, 5000, 7500, 10000]
    n_round = 200 if quick else 1000

    with tempfile.TemporaryDirectory(prefix="pullprobe-bench-") as work:
        b = Bench(args, work)
        reg, reg_port, ca = b.registry()
        with reg:
            res = {}
            step = lambda what: print(f"  … {what}", file=sys.stderr, flush=True)
            step("start to ready")
            res["ready"] = start_to_ready(b, ca, 3 if quick else 10)
            step("idle RSS")
            res["idle"] = idle(b, ca)
            step(f"pullprobe agent, {marks[-1]} probes of 200 targets at 1 s")
            res["pp_sustained"] = sustained_pullprobe(b, reg_port, ca, marks)
            step(f"blackbox, {marks[-1]} sequential probes")
            res["bb_sustained"] = sustained_blackbox(b, reg_port, ca, marks)
            step(f"one round over {n_round} targets")
            res["pp_round"] = round_pullprobe(b, reg_port, ca, n_round)
            res["check_round"] = round_check(b, reg_port, ca, n_round)
            res["bb_round"] = round_blackbox(b, reg_port, ca, n_round, 16)
    res["render_ms"] = {n: criterion_ms(args.target_dir, f"render_metrics_{n}_targets")
                        for n in (7, 1000)}
    res["quick"] = quick
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    report(res, marks, n_round)


def report(res, marks, n_round):
    pp_s, bb_s = res["pp_sustained"], res["bb_sustained"]
    pp_cpu, bb_cpu = per_probe_ms(pp_s), per_probe_ms(bb_s)
    first, last = pp_s[0], pp_s[-1]
    growth = last["rss"] - first["rss"]
    idle_pp, idle_bb = res["idle"]["pullprobe"]["rss"], res["idle"]["blackbox"]["rss"]
    disk = res["idle"]["from_disk"]
    disk_pp, disk_bb = disk["pullprobe"]["rss"], disk["blackbox"]["rss"]
    pr, cr, br = res["pp_round"], res["check_round"], res["bb_round"]
    render = res["render_ms"][1000]
    ready_pp, ready_bb = res["ready"]["pullprobe"] * 1e3, res["ready"]["blackbox"] * 1e3
    yes = lambda ok: "yes" if ok else "**no**"
    k = lambda n: f"{n:,}".replace(",", " ")
    rows = [
        ("CPU per single-host TLS HEAD probe (new TCP + TLS each time)",
         "≤ 0.25 × blackbox", fmt(pp_cpu, "ms", 3), fmt(bb_cpu, "ms", 3), ratio(pp_cpu, bb_cpu),
         yes(pp_cpu <= 0.25 * bb_cpu)),
        ("idle RSS, default config (7 targets), binary as built", "≤ 8 MB (≤ 0.6 ×)",
         fmt(idle_pp, "MB"), fmt(idle_bb, "MB"), ratio(idle_pp, idle_bb),
         yes(idle_pp <= 8 and idle_pp <= 0.6 * idle_bb)),
        ("idle RSS, default config, binary read from disk", "≤ 8 MB (≤ 0.6 ×)",
         fmt(disk_pp, "MB"), fmt(disk_bb, "MB"), ratio(disk_pp, disk_bb),
         yes(disk_pp <= 8 and disk_pp <= 0.6 * disk_bb)),
        (f"RSS after {k(first['mark'])} probes", "–", fmt(first["rss"], "MB"),
         fmt(bb_s[0]["rss"], "MB"), ratio(first["rss"], bb_s[0]["rss"]), ""),
        (f"RSS after {k(last['mark'])} probes (growth since {k(first['mark'])})",
         "≤ 12 MB, flat from 1 000", f"{fmt(last['rss'], 'MB')} ({growth:+.2f} MB)",
         f"{fmt(bb_s[-1]['rss'], 'MB')} ({bb_s[-1]['rss'] - bb_s[0]['rss']:+.2f} MB)",
         ratio(last["rss"], bb_s[-1]["rss"]), yes(last["rss"] <= 12 and growth <= 0.5)),
        (f"one round over {k(n_round)} targets, concurrency 16: wall", "≤ 5 s",
         fmt(pr["wall"], "s"), fmt(br["wall"], "s"), ratio(pr["wall"], br["wall"]),
         yes(pr["wall"] <= 5)),
        (f"one round over {k(n_round)} targets: peak RSS (VmHWM)", "≤ 64 MB", fmt(pr["hwm"], "MB"),
         fmt(br["hwm"], "MB"), ratio(pr["hwm"], br["hwm"]), yes(pr["hwm"] <= 64)),
        (f"`--check` over {k(n_round)} targets (16 at once): wall / peak RSS", "–",
         f"{fmt(cr['wall'], 's')} / {fmt(cr['hwm'], 'MB')}", "–", "–", ""),
        ("rendering /metrics for 1 000 targets (criterion median)", "≤ 10 ms",
         fmt(render, "ms", 3), "–", "–", yes(render is not None and render <= 10)),
        ("start to ready (median)", "≤ 10 ms", fmt(ready_pp, "ms", 1), fmt(ready_bb, "ms", 1),
         ratio(ready_pp, ready_bb), yes(ready_pp <= 10)),
    ]
    print("| measure | target | pullprobe | blackbox_exporter | ratio | met |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()
    print(f"Failed probes: pullprobe sustained {last['failures']}, round {pr['failures']}, "
          f"--check {cr['failures']}; blackbox sustained {bb_s[-1]['failures']}, round {br['failures']}.")
    print("pullprobe RSS at each mark: " + ", ".join(f"{k(s['mark'])}: {s['rss']:.2f} MB" for s in pp_s))
    print("blackbox RSS at each mark: " + ", ".join(f"{k(s['mark'])}: {s['rss']:.2f} MB" for s in bb_s))
    i_pp, i_bb = res["idle"]["pullprobe"], res["idle"]["blackbox"]
    print(f"Idle detail: pullprobe anon {i_pp['anon']:.2f} MB + file {i_pp['file']:.2f} MB, "
          f"{i_pp['threads']} threads; blackbox anon {i_bb['anon']:.2f} MB + file {i_bb['file']:.2f} MB, "
          f"{i_bb['threads']} threads.")
    d_pp, d_bb = disk["pullprobe"], disk["blackbox"]
    print(f"Idle detail, read from disk: pullprobe anon {d_pp['anon']:.2f} MB + file "
          f"{d_pp['file']:.2f} MB; blackbox anon {d_bb['anon']:.2f} MB + file {d_bb['file']:.2f} MB.")
    if res["render_ms"][7] is not None:
        print(f"Rendering /metrics for 7 targets: {res['render_ms'][7]:.3f} ms.")
    if res["quick"]:
        print("\n(--quick: a smoke run with fewer probes and targets; not for the record.)")


if __name__ == "__main__":
    main()
