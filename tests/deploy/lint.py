#!/usr/bin/env python3
"""Structural checks behind tests/deploy/check.sh (which runs promtool and the other tools).

Subcommands (each prints what it checked and exits 1 on any problem):
  alerts RULES RUNBOOK            mixin conventions of every alert; runbook anchors; required names;
                                  metric and label names against the agent's contract
  alert-tests RULES TEST...       every alert (and severity) is tested firing and not firing
  prometheusrule RENDERED RULES   the PrometheusRule in a rendered overlay has rules.yaml as spec
  selected-by RENDERED KEY=VALUE  the PodMonitor and PrometheusRule carry the label a
                                  Prometheus' podMonitorSelector/ruleSelector match on
  manifests RENDERED [--host-network]  hardening of the rendered DaemonSet and PodMonitor; its
                                  hostPath volumes; the node paths config.yaml names are mounted;
                                  the agent's API access (pod-watch) against config.yaml's pods:;
                                  the recommended labels on every object; the dashboard
                                  ConfigMap, release labels and Prometheus' Role if present
  pod-watch-modes FULL NODE_ONLY   the ClusterRole of components/pod-watch/node-credentials-only
                                  is that of components/pod-watch without its secrets rule
  node-fixture-config RENDERED ROOT OUT  writes the rendered config.yaml to OUT with its node
                                  paths and docker_config moved under ROOT (node-file fixtures)
  dashboard JSON OUT_RULE_FILE    dashboard structure, metric and label names; writes every query
                                  (Grafana variables substituted) as a recording rule to
                                  OUT_RULE_FILE for `promtool check rules` to parse
Needs PyYAML.
"""

import json
import re
import sys

import yaml

# The agent's metric contract (docs/agent.md, "Metrics"): every metric and its labels.
# Dashboards may use only these; alert rules may also use Prometheus' own `up`.
_TR = ("target", "registry")
_TRE = ("target", "registry", "endpoint")
METRIC_LABELS = {
    "pullprobe_probe_success": _TRE,
    "pullprobe_probe_result": _TRE + ("phase", "reason"),
    "pullprobe_probe_duration_seconds": _TRE,
    "pullprobe_phase_duration_seconds": _TRE + ("phase",),
    "pullprobe_endpoint_success": _TRE,
    "pullprobe_probes_total": _TR,
    "pullprobe_probe_failures_total": _TR,
    "pullprobe_probe_consecutive_failures": _TR,
    "pullprobe_last_probe_timestamp_seconds": _TR,
    "pullprobe_probe_interval_seconds": _TR,
    "pullprobe_tls_cert_expiry_timestamp_seconds": _TRE,
    "pullprobe_ratelimit_limit": _TRE,
    "pullprobe_ratelimit_remaining": _TRE,
    "pullprobe_ratelimit_window_seconds": _TRE,
    "pullprobe_ratelimit_source_info": _TRE + ("source",),
    "pullprobe_build_info": ("version", "revision", "rustc_version"),
    "pullprobe_config_last_reload_successful": (),
    "pullprobe_config_last_reload_success_timestamp_seconds": (),
    # components/pod-watch: a container of a pod on this node waits in ErrImagePull or
    # ImagePullBackOff; phase and reason are pullprobe's verdict for its image from this node.
    "pullprobe_pod_image_pull_failure": ("namespace", "pod", "container", "phase", "reason"),
    # components/pod-watch: 1 while the agent lists and watches its node's pods.
    "pullprobe_pod_watch_up": (),
}
AGENT_METRICS = set(METRIC_LABELS)
PROMETHEUS_METRICS = {"up"}
# Labels the scrape adds to every series (the PodMonitor relabels the node name into `node`);
# `cluster` where several clusters share a Prometheus (external_labels or relabelling), which
# every aggregation and join must keep (docs/deploy.md, "Several clusters").
SCRAPE_LABELS = {"job", "instance", "node", "cluster"}
# Recording rules of rules.yaml: `pullprobe:` names, usable by the alerts.
RECORD_NAME = re.compile(r"pullprobe:[a-z_]+")

REQUIRED_ALERTS = {
    "PullProbeRegistryUnreachable",
    "PullProbeRegistryUnreachableFromManyNodes",
    "PullProbeDNSFailure",
    "PullProbeAuthFailure",
    "PullProbeImageNotFound",
    "PullProbeNodeConfigInvalid",
    "PullProbeRateLimitLow",
    "PullProbeRateLimitExhausted",
    "PullProbeTLSCertExpiringSoon",
    "PullProbeStale",
    "PullProbeMirrorFailing",
    "PullProbePodImagePullFailing",
}
SEVERITIES = {"critical", "warning", "info"}
RUNBOOK_URL = "https://github.com/pullprobe/pullprobe/blob/main/docs/runbook.md#"

# The values of the agent's closed label sets; a selector on them must use real values.
REASONS = {
    "ok", "node_config_invalid",
    "dns_nxdomain", "dns_no_records", "dns_servfail", "dns_timeout", "dns_error",
    "connect_refused", "connect_timeout", "connect_unreachable", "connect_error",
    "tls_untrusted", "tls_expired", "tls_name_mismatch", "tls_handshake",
    "auth_required", "auth_failed", "name_unknown", "manifest_unknown", "platform_missing",
    "rate_limited", "server_error", "protocol_error", "timeout",
}
PHASES = {"none", "node", "dns", "connect", "tls", "auth", "manifest"}

PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan", "atan2",
}


class Report:
    def __init__(self, what):
        self.what = what
        self.problems = []
        self.checked = 0

    def ok(self, cond, problem):
        self.checked += 1
        if not cond:
            self.problems.append(problem)
        return cond

    def finish(self):
        for p in self.problems:
            print(f"  FAIL {p}")
        status = "FAIL" if self.problems else "ok"
        print(f"  {status}: {self.what} ({self.checked} checks, {len(self.problems)} problems)")
        return 1 if self.problems else 0


def metric_names(expr):
    """Metric names referenced by a PromQL expression: identifiers that are not functions,
    keywords, label names or durations. Good enough for the expressions in this repository;
    promtool does the real parsing."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # strings
    s = re.sub(r"\{[^}]*\}", "", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", "", s)  # ranges and subqueries
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", s)  # label lists
    s = re.sub(r"\boffset\s+-?[0-9a-z]+", "", s)
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", s):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in PROMQL_KEYWORDS:
            continue
        names.add(name)
    return names


def label_values_used(expr, label):
    """Values a selector compares `label` with (=, !=, =~, !~ on plain alternatives)."""
    values = set()
    for m in re.finditer(label + r'\s*(=~|!~|!=|=)\s*"([^"]*)"', expr):
        op, v = m.groups()
        if op in ("=~", "!~"):
            for alt in v.split("|"):
                values.add(alt)
        else:
            values.add(v)
    return values


def label_names_used(expr):
    """Label names an expression relies on: in selectors, in by/without/on/ignoring and in
    group_left/group_right lists."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    names = set()
    for sel in re.findall(r"\{([^}]*)\}", s):
        names.update(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", sel))
    for lst in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", s):
        names.update(n.strip() for n in lst.split(",") if n.strip())
    return names


def check_label_names(rep, where, expr, extra=(), recorded=None):
    """Every label the expression (or its legend) names exists on one of its metrics or is
    added by the scrape: a query that groups or joins on a label its metrics lack is valid
    PromQL, so promtool cannot see the mistake. `recorded` maps recording-rule names to their
    labels."""
    metrics = metric_names(expr)
    known = set(SCRAPE_LABELS) | {"__name__"}
    for m in metrics:
        known.update(METRIC_LABELS.get(m, ()))
        known.update((recorded or {}).get(m, ()))
    for name in sorted(label_names_used(expr) | set(extra)):
        rep.ok(name in known, f"{where}: label {name!r} is on none of {sorted(metrics)} (labels: {sorted(known)})")


def check_cluster_kept(rep, where, expr):
    """`cluster` in every `by (...)` and `on (...)` list: an aggregation or a join without it
    merges the series of several clusters sharing a Prometheus (`without` and `ignoring` keep
    it by construction)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|`[^`]*`', '""', expr)
    for kw, lst in re.findall(r"\b(by|on)\s*\(([^)]*)\)", s):
        names = [n.strip() for n in lst.split(",") if n.strip()]
        if names:
            rep.ok("cluster" in names, f"{where}: `{kw} ({', '.join(names)})` drops `cluster`; add it (harmless where there is no such label)")


def check_label_values(rep, where, expr):
    for label, allowed in (("reason", REASONS), ("phase", PHASES)):
        for v in label_values_used(expr, label):
            if v.endswith(".*"):
                prefix = v[:-2]
                rep.ok(any(a.startswith(prefix) for a in allowed), f"{where}: {label}=~{v!r} matches no {label}")
            else:
                rep.ok(v in allowed, f"{where}: {label} value {v!r} is not one the agent emits")


def cmd_alerts(rules_path, runbook_path):
    rep = Report(f"alert conventions in {rules_path}")
    rules = yaml.safe_load(open(rules_path))
    runbook = open(runbook_path).read()
    anchors = {h.strip().lower() for h in re.findall(r"^## (\S+)\s*$", runbook, re.M)}
    seen = set()
    # Recording rules: their names and labels (those of the metrics they are computed from).
    recorded = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                name = rule["record"]
                labels = set()
                for m in metric_names(rule["expr"]):
                    labels.update(METRIC_LABELS.get(m, ()))
                recorded[name] = tuple(sorted(labels))
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                name, where = rule["record"], f"recording rule {rule['record']}"
                rep.ok(RECORD_NAME.fullmatch(name), f"{where}: name must be pullprobe:<what>")
                for m in sorted(metric_names(rule["expr"])):
                    rep.ok(m in AGENT_METRICS | set(recorded), f"{where}: expr uses {m!r}, neither an agent metric nor a recording rule")
                check_label_values(rep, where, rule["expr"])
                check_label_names(rep, where, rule["expr"], recorded=recorded)
                check_cluster_kept(rep, where, rule["expr"])
                continue
            if "alert" not in rule:
                continue
            name = rule["alert"]
            seen.add(name)
            where = f"alert {name}"
            rep.ok(re.fullmatch(r"PullProbe[A-Z][A-Za-z]*", name or ""), f"{where}: name must be CamelCase with the PullProbe prefix")
            labels = rule.get("labels") or {}
            rep.ok(labels.get("severity") in SEVERITIES, f"{where}: severity must be one of {sorted(SEVERITIES)}, is {labels.get('severity')!r}")
            ann = rule.get("annotations") or {}
            summary = ann.get("summary", "")
            rep.ok(summary and summary[0].isupper() and summary.endswith("."), f"{where}: summary must be a capitalised sentence ending in a period")
            rep.ok("{{" not in summary, f"{where}: summary must be static (templates go in description)")
            desc = ann.get("description", "")
            rep.ok("{{" in desc and "$labels" in desc, f"{where}: description must be templated with the alert's labels")
            url = ann.get("runbook_url", "")
            anchor = name.lower()
            rep.ok(url == RUNBOOK_URL + anchor, f"{where}: runbook_url must be {RUNBOOK_URL + anchor}, is {url!r}")
            rep.ok(anchor in anchors, f"{where}: {runbook_path} has no '## {name}' section")
            used = metric_names(rule["expr"])
            for m in sorted(used):
                rep.ok(m in AGENT_METRICS | PROMETHEUS_METRICS | set(recorded), f"{where}: expr uses {m!r}, not a metric the agent exports")
            check_label_values(rep, where, rule["expr"])
            check_label_names(rep, where, rule["expr"], recorded=recorded)
            check_cluster_kept(rep, where, rule["expr"])
            # A per-node alert on the last result counts probes (docs/deploy.md, "Why these
            # `for:` durations"): a failed probe holds for a whole interval, so minutes alone
            # would fire on one failure at long intervals.
            if "pullprobe_probe_result" in used and "count" not in re.findall(r"\b(count|sum)\s+by", rule["expr"]):
                rep.ok(re.search(r"pullprobe_probe_consecutive_failures\s*>=\s*2", rule["expr"]),
                       f"{where}: a per-node alert on pullprobe_probe_result must also require pullprobe_probe_consecutive_failures >= 2")
            # Queries in the description select the alert's own cluster.
            for q in re.findall(r"`([^`]*%q[^`]*)`", desc):
                rep.ok("cluster=%q" in q, f"{where}: the description query {q!r} must select cluster=%q ($labels.cluster) too")
    missing = REQUIRED_ALERTS - seen
    rep.ok(not missing, f"required alerts missing: {sorted(missing)}")
    sections = {h for h in re.findall(r"^## (\S+)\s*$", runbook, re.M)}
    stray = sections - seen
    rep.ok(not stray, f"{runbook_path} has sections for alerts that do not exist: {sorted(stray)}")
    print(f"  {len(seen)} alert names, all {len(REQUIRED_ALERTS)} required ones present" if not missing else "")
    return rep.finish()


def cmd_alert_tests(rules_path, test_paths):
    rep = Report(f"unit-test coverage of {rules_path}")
    rules = yaml.safe_load(open(rules_path))
    wanted = {(r["alert"], r["labels"]["severity"]) for g in rules["groups"] for r in g["rules"] if "alert" in r}
    fires, quiet = set(), set()
    for path in test_paths:
        for test in yaml.safe_load(open(path))["tests"]:
            for case in test.get("alert_rule_test", []):
                name = case["alertname"]
                if case.get("exp_alerts"):
                    fires.update((name, a["exp_labels"].get("severity")) for a in case["exp_alerts"])
                else:
                    quiet.add(name)
    for name, severity in sorted(wanted):
        rep.ok((name, severity) in fires, f"no test expects {name} (severity {severity}) to fire")
        rep.ok(name in quiet, f"no test expects {name} to stay quiet")
    return rep.finish()


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def cmd_prometheusrule(rendered_path, rules_path):
    rep = Report(f"PrometheusRule in {rendered_path} against {rules_path}")
    rules = yaml.safe_load(open(rules_path))
    prs = [d for d in load_docs(rendered_path) if d.get("kind") == "PrometheusRule"]
    if rep.ok(len(prs) == 1, f"expected one PrometheusRule, found {len(prs)}"):
        rep.ok(prs[0]["spec"] == rules, "its spec differs from rules.yaml")
        rep.ok(prs[0]["metadata"].get("namespace") == "pullprobe", "it is not in the pullprobe namespace")
    return rep.finish()


# Host paths the DaemonSet may mount, and the hostPath type each must have. Every one is mounted
# read-only at its own path in the pod, so the agent's defaults and its messages name the node's
# paths. The types make kubelet check the path and never create it: the DaemonSet does not write
# to the node (a node lacking a path does not start the agent, which PullProbeAgentDown shows).
# Never /var/lib/kubelet as a whole (every pod's volumes, Secrets and tokens included), never a
# runtime socket. See docs/deploy.md.
HOST_PATHS = {
    # base: the node's trust store, as containerd's TLS client uses it
    "/etc/ssl/certs": "Directory",
    # components/node-config: containerd's hosts directories (certs.d) and config.toml
    "/etc/containerd": "Directory",
    # components/node-config/docker-certs-d: containerd's and containers/image's second root
    "/etc/docker/certs.d": "Directory",
    # components/node-config/crio: registries.conf(.d) and certs.d of containers/image
    "/etc/containers": "Directory",
    # components/node-config/containerd-proxy: containerd's systemd drop-ins (proxy variables)
    "/etc/systemd/system/containerd.service.d": "Directory",
    # components/node-config/kubelet-config-json: kubelet's node config.json, the file alone
    "/var/lib/kubelet/config.json": "File",
    # components/node-config/credential-providers/eks: config.json and ecr-credential-provider
    "/etc/eks/image-credential-provider": "Directory",
    # components/node-config/credential-providers/gke: the config file alone, and the bin dir
    "/etc/srv/kubernetes/cri_auth_config.yaml": "File",
    "/home/kubernetes/bin": "Directory",
}

# The config directory in the pod: relative paths in config.yaml are relative to it.
CONFIG_DIR = "/etc/pullprobe/config"


def node_config_paths(node):
    """(key, path) for every node file config.yaml's node: section names explicitly."""
    node = node or {}
    out = []
    containerd = node.get("containerd") or {}
    for part in str(containerd.get("config_path") or "").split(":"):
        if part:
            out.append(("node.containerd.config_path", part))
    if containerd.get("proxy_env_file"):
        out.append(("node.containerd.proxy_env_file", containerd["proxy_env_file"]))
    kubelet = node.get("kubelet") or {}
    if kubelet.get("root_dir"):
        out.append(("node.kubelet.root_dir", kubelet["root_dir"].rstrip("/") + "/config.json"))
    for key in ("credential_provider_config", "credential_provider_bin_dir"):
        if kubelet.get(key):
            out.append((f"node.kubelet.{key}", kubelet[key]))
    crio = node.get("crio") or {}
    for key in ("registries_conf", "registries_conf_d"):
        if crio.get(key):
            out.append((f"node.crio.{key}", crio[key]))
    return [(k, p if p.startswith("/") else f"{CONFIG_DIR}/{p}") for k, p in out]


def check_node_config(rep, docs, pod, host_mounts):
    """The node files config.yaml names must be in the pod (under a hostPath mount), and
    credential-provider plugins need the node's network identity (host network)."""
    cms = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "pullprobe-config"]
    if not rep.ok(len(cms) == 1 and "config.yaml" in cms[0].get("data", {}), "expected ConfigMap pullprobe-config with config.yaml"):
        return
    try:
        cfg = yaml.safe_load(cms[0]["data"]["config.yaml"]) or {}
    except yaml.YAMLError as e:
        rep.ok(False, f"config.yaml of ConfigMap pullprobe-config is not YAML: {e}")
        return
    for key, path in node_config_paths(cfg.get("node")):
        rep.ok(any(path == m or path.startswith(m.rstrip("/") + "/") for m in host_mounts),
               f"config.yaml {key} names {path}, which no hostPath volume mounts (add the node-config component that mounts it)")
    if ((cfg.get("node") or {}).get("kubelet") or {}).get("credential_provider_bin_dir"):
        rep.ok(pod.get("hostNetwork") is True,
               "config.yaml runs credential-provider plugins, which need the host network to get the node's identity from the instance metadata service")


def cmd_node_fixture_config(rendered_path, root, out_path):
    """Write the rendered config.yaml with every node path it names, and docker_config, moved
    under ROOT (a copy of the node's files), for the agent to load outside a node."""
    cms = [d for d in load_docs(rendered_path) if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "pullprobe-config"]
    cfg = yaml.safe_load(cms[0]["data"]["config.yaml"]) or {}
    moved = []

    def move(path):
        moved.append(path)
        return root.rstrip("/") + path

    if str(cfg.get("docker_config", "")).startswith("/"):
        cfg["docker_config"] = move(cfg["docker_config"])
    node = cfg.get("node") or {}
    containerd = node.get("containerd") or {}
    if containerd.get("config_path"):
        containerd["config_path"] = ":".join(move(p) if p.startswith("/") else p for p in containerd["config_path"].split(":"))
    for section, keys in (("containerd", ("proxy_env_file",)), ("kubelet", ("root_dir", "credential_provider_config", "credential_provider_bin_dir")),
                          ("crio", ("registries_conf", "registries_conf_d"))):
        sec = node.get(section) or {}
        for k in keys:
            if str(sec.get(k, "")).startswith("/"):
                sec[k] = move(sec[k])
    with open(out_path, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    print(f"  {out_path}: moved under {root}: {', '.join(moved) or 'nothing'}")
    return 0


# The recommended labels every rendered object carries (kubernetes.io, "Recommended Labels"),
# with the values that do not depend on the installation; instance may be changed by an
# overlay, component says what the object is for.
STANDARD_LABELS = {
    "app.kubernetes.io/name": "pullprobe",
    "app.kubernetes.io/instance": None,
    "app.kubernetes.io/component": ("probe-agent", "monitoring", "pod-watch"),
    "app.kubernetes.io/part-of": "pullprobe",
    "app.kubernetes.io/managed-by": "kustomize",
}


def check_standard_labels(rep, d):
    where = f"{d['kind']}/{d['metadata']['name']}"
    labels = d["metadata"].get("labels") or {}
    for key, want in STANDARD_LABELS.items():
        got = labels.get(key)
        if want is None:
            rep.ok(got, f"{where}: lacks the label {key}")
        elif isinstance(want, tuple):
            rep.ok(got in want, f"{where}: label {key} must be one of {list(want)}, is {got!r}")
        else:
            rep.ok(got == want, f"{where}: label {key} must be {want!r}, is {got!r}")


def check_monitoring_stack(rep, docs):
    """The objects the monitoring stacks select: a release label on the PodMonitor goes with
    the same on the PrometheusRule (kube-prometheus-stack selects both by it); the dashboard
    ConfigMap holds dashboards/*.json unchanged, for Grafana's sidecar; kube-prometheus'
    Role lets its Prometheus discover the agents' pods."""
    pms = [d for d in docs if d["kind"] == "PodMonitor"]
    prs = [d for d in docs if d["kind"] == "PrometheusRule"]
    releases = {(d["metadata"].get("labels") or {}).get("release") for d in pms + prs}
    rep.ok(len(releases) <= 1, f"PodMonitor and PrometheusRule must carry the same release label, have {sorted(map(str, releases))}")
    for cm in (d for d in docs if d["kind"] == "ConfigMap" and (d["metadata"].get("labels") or {}).get("grafana_dashboard") is not None):
        where = f"ConfigMap/{cm['metadata']['name']}"
        rep.ok(cm["metadata"]["labels"]["grafana_dashboard"] == "1", f"{where}: the sidecar selects grafana_dashboard: \"1\"")
        root = __file__.rsplit("/tests/deploy/", 1)[0] if "/tests/deploy/" in __file__ else "."
        for key, text in (cm.get("data") or {}).items():
            try:
                with open(f"{root}/dashboards/{key}") as f:
                    rep.ok(json.loads(text) == json.load(f), f"{where}: {key} differs from dashboards/{key}")
            except (OSError, ValueError) as e:
                rep.ok(False, f"{where}: {key} is not a dashboard of dashboards/: {e}")
        size = sum(len(v) for v in (cm.get("data") or {}).values())
        # kubectl apply (client side) stores the whole object in an annotation of at most 256 KiB.
        rep.ok(size < 200_000, f"{where}: {size} bytes is too close to the 256 KiB limit of kubectl apply's annotation (use --server-side)")
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Role"}
    for rb in (d for d in docs if d["kind"] == "RoleBinding"):
        where = f"RoleBinding/{rb['metadata']['name']}"
        role = roles.get(rb["roleRef"]["name"])
        if rep.ok(rb["roleRef"]["kind"] == "Role" and role, f"{where}: must bind a Role of this overlay"):
            rules = role.get("rules", [])
            rep.ok(any("" in r.get("apiGroups", []) and "pods" in r.get("resources", []) and {"get", "list", "watch"} <= set(r.get("verbs", []))
                       for r in rules), f"{where}: its Role must let Prometheus get, list and watch pods (PodMonitor discovery)")
            rep.ok(all(set(r.get("verbs", [])) <= {"get", "list", "watch"} for r in rules), f"{where}: its Role must be read-only")
            rep.ok(not any("secrets" in r.get("resources", []) for r in rules), f"{where}: its Role must not read Secrets")
        for sub in rb.get("subjects", []):
            rep.ok(sub.get("kind") == "ServiceAccount" and sub.get("namespace") not in (None, "pullprobe"),
                   f"{where}: subject {sub} must be the Prometheus ServiceAccount in its own namespace (kustomize's namespace must not rewrite it)")


def cmd_selected_by(rendered_path, selector):
    """The PodMonitor and the PrometheusRule match a Prometheus' podMonitorSelector and
    ruleSelector given as KEY=VALUE (matchLabels), as kube-prometheus-stack sets them."""
    key, _, value = selector.partition("=")
    rep = Report(f"{rendered_path} selected by {selector}")
    docs = load_docs(rendered_path)
    for kind in ("PodMonitor", "PrometheusRule"):
        objs = [d for d in docs if d["kind"] == kind]
        if rep.ok(len(objs) == 1, f"expected one {kind}, found {len(objs)}"):
            rep.ok((objs[0]["metadata"].get("labels") or {}).get(key) == value, f"{kind} lacks the label {key}: {value}; that Prometheus ignores it")
    return rep.finish()


# Kinds without a namespace.
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}

# What components/pod-watch grants the agent, per resource (core API group): read-only, and on
# secrets `get` alone (never list or watch: the agent reads the pull secrets a pod names, by
# name). docs/deploy.md, "Pods that cannot pull (pod-watch)".
POD_WATCH_VERBS = {
    "pods": {"get", "list", "watch"},
    "events": {"get", "list", "watch"},
    "serviceaccounts": {"get"},
    "secrets": {"get"},
}


def check_pod_watch(rep, docs, ds):
    """The agent's API access (components/pod-watch) against its config.yaml: a token only where
    a binding grants the pod watch something; the grant exactly the least the watch needs
    (secrets only when pods.pull_secrets is on); the node name from the downward API; no
    NetworkPolicy egress rules that could cut the agent off the API server."""
    pod = ds["spec"]["template"]["spec"]
    ns = ds["metadata"].get("namespace")
    sa = pod.get("serviceAccountName")
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterRole"}
    bindings = [d for d in docs if d["kind"] == "ClusterRoleBinding"
                and any(s.get("kind") == "ServiceAccount" and s.get("name") == sa for s in d.get("subjects", []))]
    for b in bindings:
        where = f"ClusterRoleBinding/{b['metadata']['name']}"
        for s in b.get("subjects", []):
            rep.ok(s.get("kind") == "ServiceAccount" and s.get("name") == sa and s.get("namespace") == ns,
                   f"{where}: subject {s} must be the agent's ServiceAccount {sa} in its namespace {ns} (kustomize's namespace: does not rewrite it; patch it with the namespace)")
        rep.ok(b["roleRef"]["kind"] == "ClusterRole" and b["roleRef"]["name"] in roles, f"{where}: must bind a ClusterRole of this overlay")
    granted = {}
    for b in bindings:
        for r in roles.get(b["roleRef"]["name"], {}).get("rules", []):
            where = f"ClusterRole/{b['roleRef']['name']}"
            rep.ok(r.get("apiGroups") == [""] and not r.get("resourceNames") and not r.get("nonResourceURLs"),
                   f"{where}: rule {r} must be on the core API group only")
            for res in r.get("resources", []):
                if not rep.ok(res in POD_WATCH_VERBS, f"{where}: grants {res}, which the pod watch does not read"):
                    continue
                verbs = set(r.get("verbs", []))
                rep.ok(verbs <= POD_WATCH_VERBS[res], f"{where}: grants {sorted(verbs)} on {res}; the pod watch needs {sorted(POD_WATCH_VERBS[res])} at most")
                granted.setdefault(res, set()).update(verbs)
    cms = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "pullprobe-config"]
    cfg = {}
    if cms and "config.yaml" in cms[0].get("data", {}):
        try:
            cfg = yaml.safe_load(cms[0]["data"]["config.yaml"]) or {}
        except yaml.YAMLError:
            pass  # check_node_config reports it
    pods = cfg.get("pods") or {}
    token = pod.get("automountServiceAccountToken")
    if not bindings:
        rep.ok(token is False, "pod must not automount a service account token (nothing is bound to it; components/pod-watch does both)")
        rep.ok(not pods.get("watch"), "config.yaml sets pods.watch: true, but nothing grants the agent API access: add components/pod-watch")
        return
    rep.ok(token is True, "a ClusterRoleBinding grants the agent's ServiceAccount access, but the pod does not mount its token (automountServiceAccountToken: true)")
    for res in ("pods", "events", "serviceaccounts"):
        rep.ok(POD_WATCH_VERBS[res] <= granted.get(res, set()), f"the pod watch needs {sorted(POD_WATCH_VERBS[res])} on {res}, has {sorted(granted.get(res, set()))}")
    if pods.get("watch"):
        pull_secrets = pods.get("pull_secrets", True)
        if pull_secrets:
            rep.ok("get" in granted.get("secrets", set()),
                   "config.yaml reads pull secrets (pods.pull_secrets defaults to true) but the ClusterRole cannot get secrets: set pods.pull_secrets: false with components/pod-watch/node-credentials-only")
        else:
            rep.ok("secrets" not in granted,
                   "config.yaml sets pods.pull_secrets: false but the ClusterRole still reads secrets: add components/pod-watch/node-credentials-only")
        if not pods.get("node_name"):
            envs = {e["name"]: e for c in pod["containers"] for e in c.get("env", [])}
            rep.ok(envs.get("NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName",
                   "config.yaml watches pods without pods.node_name, so the container needs env NODE_NAME from fieldRef spec.nodeName")
    for np in (d for d in docs if d["kind"] == "NetworkPolicy"):
        rep.ok("Egress" not in np["spec"].get("policyTypes", []),
               f"NetworkPolicy/{np['metadata']['name']} restricts egress, which may cut the pod watch off the API server; allow it (443 and the API server's port) and adapt this check")


def cmd_pod_watch_modes(full_path, node_only_path):
    """node-credentials-only removes the secrets rule from pod-watch's ClusterRole, and nothing
    else (its JSON patch removes a rule by position)."""
    rep = Report(f"node-credentials-only ({node_only_path}) against pod-watch ({full_path})")
    roles = []
    for path in (full_path, node_only_path):
        found = [d for d in load_docs(path) if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "pullprobe-pod-watch"]
        rep.ok(len(found) == 1, f"{path}: expected ClusterRole pullprobe-pod-watch, found {len(found)}")
        roles.append(found[0] if found else {})
    full, node_only = (r.get("rules", []) for r in roles)
    rep.ok(any("secrets" in r.get("resources", []) for r in full), "pod-watch's ClusterRole does not read secrets")
    rep.ok(node_only == [r for r in full if "secrets" not in r.get("resources", [])],
           f"node-credentials-only must keep every rule but the secrets one; has {node_only}")
    return rep.finish()


def check_restricted(rep, docs, pod):
    """The pod-network variant is for clusters that forbid host access: its namespace enforces
    Pod Security's `restricted` profile, and the pod passes it (no host namespaces, ports or
    paths; the container checks below cover the rest of the profile)."""
    for ns in (d for d in docs if d["kind"] == "Namespace"):
        labels = ns["metadata"].get("labels") or {}
        rep.ok(labels.get("pod-security.kubernetes.io/enforce") == "restricted",
               f"Namespace/{ns['metadata']['name']} must enforce pod-security restricted, has {labels.get('pod-security.kubernetes.io/enforce')!r}")
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        rep.ok(not pod.get(key), f"pod must not set {key} (restricted profile)")
    rep.ok(not any("hostPath" in v for v in pod.get("volumes", [])),
           "pod must mount no hostPath volume (restricted profile)")
    for c in pod["containers"]:
        rep.ok(not any(p.get("hostPort") for p in c.get("ports", [])),
               f"container {c['name']}: no hostPort (restricted profile)")
        rep.ok((c.get("securityContext") or {}).get("privileged") is not True,
               f"container {c['name']}: must not be privileged")


def cmd_manifests(rendered_path, host_network):
    rep = Report(f"hardening of {rendered_path}")
    docs = load_docs(rendered_path)
    for d in docs:
        check_standard_labels(rep, d)
        if d["kind"] not in CLUSTER_SCOPED:
            rep.ok(d["metadata"].get("namespace") == "pullprobe", f"{d['kind']}/{d['metadata']['name']} is not in the pullprobe namespace")
    check_monitoring_stack(rep, docs)
    dss = [d for d in docs if d["kind"] == "DaemonSet"]
    if not rep.ok(len(dss) == 1, f"expected one DaemonSet, found {len(dss)}"):
        return rep.finish()
    ds = dss[0]
    spec = ds["spec"]
    # spec.selector is immutable: it stays the one label the base sets, and the recommended
    # labels an overlay may change never reach it.
    rep.ok(spec.get("selector") == {"matchLabels": {"app.kubernetes.io/name": "pullprobe"}},
           f"DaemonSet selector must stay {{app.kubernetes.io/name: pullprobe}} (immutable), is {spec.get('selector')}")
    tmpl_labels = spec["template"]["metadata"].get("labels") or {}
    for key in STANDARD_LABELS:
        rep.ok(key in tmpl_labels, f"DaemonSet pod template lacks the label {key}")
    pod = spec["template"]["spec"]
    psc = pod.get("securityContext", {})
    check_pod_watch(rep, docs, ds)
    rep.ok(psc.get("runAsNonRoot") is True, "pod securityContext.runAsNonRoot must be true")
    rep.ok(isinstance(psc.get("runAsUser"), int) and psc["runAsUser"] != 0, "pod must run as a numeric non-root user")
    rep.ok(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "pod seccompProfile must be RuntimeDefault")
    rep.ok({"operator": "Exists"} in pod.get("tolerations", []), "pod must tolerate every taint (operator: Exists)")
    rep.ok(pod.get("priorityClassName") in ("system-node-critical", "system-cluster-critical"), "pod needs a system priority class")
    rep.ok(0 < pod.get("terminationGracePeriodSeconds", 30) <= 15, "terminationGracePeriodSeconds should be small")
    upd = spec.get("updateStrategy", {})
    rep.ok(upd.get("type") == "RollingUpdate" and upd.get("rollingUpdate", {}).get("maxUnavailable") == "10%", "updateStrategy must be RollingUpdate with maxUnavailable 10%")
    ann = spec["template"]["metadata"].get("annotations", {})
    rep.ok(ann.get("kubectl.kubernetes.io/default-container") == "pullprobe", "pod template needs the default-container annotation")
    if host_network:
        rep.ok(pod.get("hostNetwork") is True and pod.get("dnsPolicy") == "Default", "pod must use hostNetwork with dnsPolicy Default")
    else:
        check_restricted(rep, docs, pod)
    for c in pod["containers"]:
        where = f"container {c['name']}"
        sc = c.get("securityContext", {})
        rep.ok(sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation must be false")
        rep.ok(sc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem must be true")
        rep.ok(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: must drop ALL capabilities")
        rep.ok(not sc.get("capabilities", {}).get("add"), f"{where}: must add no capabilities")
        res = c.get("resources", {})
        rep.ok(res.get("requests", {}).get("cpu") and res.get("requests", {}).get("memory") and res.get("limits", {}).get("memory"),
               f"{where}: needs cpu/memory requests and a memory limit")
        if any(a.startswith("--web.config.file=") for a in c.get("args", [])):
            # Basic auth protects every endpoint (exporter-toolkit semantics): probe the port.
            for probe in ("livenessProbe", "readinessProbe"):
                rep.ok(c.get(probe, {}).get("tcpSocket", {}).get("port") == "metrics", f"{where}: {probe} must check the metrics port over TCP")
        else:
            rep.ok(c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/-/healthy", f"{where}: livenessProbe must GET /-/healthy")
            rep.ok(c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/-/ready", f"{where}: readinessProbe must GET /-/ready")
        rep.ok(any(a.startswith("--config.file=") for a in c.get("args", [])), f"{where}: needs --config.file")
        rep.ok(all(m.get("readOnly") for m in c.get("volumeMounts", [])), f"{where}: every volume mount must be read-only")
    mounts = {}  # volume name -> its mounts, across containers
    for c in pod["containers"]:
        for m in c.get("volumeMounts", []):
            mounts.setdefault(m["name"], []).append(m)
    host_mounts = []  # mount paths of hostPath volumes
    for v in pod.get("volumes", []):
        if "hostPath" not in v:
            continue
        path, where = v["hostPath"]["path"], f"volume {v['name']}"
        if not rep.ok(path in HOST_PATHS, f"{where}: unexpected hostPath {path} (allowed: HOST_PATHS in tests/deploy/lint.py, each with its reason)"):
            continue
        want = HOST_PATHS[path]
        rep.ok(v["hostPath"].get("type") == want,
               f"{where}: hostPath type must be {want}, is {v['hostPath'].get('type')!r} (DirectoryOrCreate, FileOrCreate and no type create the path on the node)")
        rep.ok(mounts.get(v["name"]), f"{where}: hostPath volume is never mounted")
        for m in mounts.get(v["name"], []):
            rep.ok(m["mountPath"] == path and not m.get("subPath"),
                   f"{where}: must be mounted whole at its node path {path}, is at {m['mountPath']}{' subPath ' + m['subPath'] if m.get('subPath') else ''}")
            host_mounts.append(m["mountPath"])
    check_node_config(rep, docs, pod, host_mounts)
    for pm in (d for d in docs if d["kind"] == "PodMonitor"):
        relabels = [r for e in pm["spec"]["podMetricsEndpoints"] for r in e.get("relabelings", [])]
        rep.ok(any(r.get("sourceLabels") == ["__meta_kubernetes_pod_node_name"] and r.get("targetLabel") == "node" for r in relabels),
               "PodMonitor must relabel __meta_kubernetes_pod_node_name into node")
        rep.ok(pm["spec"].get("jobLabel") == "app.kubernetes.io/name", "PodMonitor must set job=pullprobe via jobLabel")
        # The operator's namespace, pod and container target labels would otherwise push the
        # pod-watch metric's own aside (exported_namespace, ...).
        rep.ok(all(e.get("honorLabels") is True for e in pm["spec"]["podMetricsEndpoints"]),
               "PodMonitor must set honorLabels: true, or pullprobe_pod_image_pull_failure's namespace, pod and container become exported_*")
        # The operator labels targets with endpoint=<port name>, which would push the agent's
        # own `endpoint` label aside (exported_endpoint); the drop must come after it, i.e. in
        # the endpoint's relabelings.
        rep.ok(any(r.get("action", "").lower() == "labeldrop" and r.get("regex") == "endpoint" for r in relabels),
               "PodMonitor must drop the operator's `endpoint` target label (labeldrop endpoint), or the agent's `endpoint` becomes exported_endpoint")
    return rep.finish()


# Grafana variables, replaced by values that keep the query valid PromQL.
GRAFANA_VARS = [
    (r"\$__rate_interval|\$\{__rate_interval\}", "5m"),
    (r"\$__interval|\$\{__interval\}", "1m"),
    (r"\$__range|\$\{__range\}", "6h"),
    (r"\$\{?(cluster|node|target|registry)(:[a-z]+)?\}?", "x"),
]


def substitute(expr):
    for pattern, value in GRAFANA_VARS:
        expr = re.sub(pattern, value, expr)
    return expr


def duration_seconds(text):
    """Seconds of a Prometheus duration such as 1m30s; None when it is not one."""
    m = re.fullmatch(r"((\d+)h)?((\d+)m)?((\d+)s)?", text or "")
    if not m or not text:
        return None
    return int(m.group(2) or 0) * 3600 + int(m.group(4) or 0) * 60 + int(m.group(6) or 0)


def podmonitor_scrape_interval():
    """The scrape interval of the shipped PodMonitor, in seconds."""
    root = __file__.rsplit("/tests/deploy/", 1)[0] if "/tests/deploy/" in __file__ else "."
    pm = yaml.safe_load(open(f"{root}/deploy/components/prometheus-operator/podmonitor.yaml"))
    return duration_seconds(pm["spec"]["podMetricsEndpoints"][0]["interval"])


# A per-node query is bounded when it keeps at most k series (topk/bottomk) or only failing
# ones (a comparison that drops the healthy series).
BOUNDED = re.compile(r"\b(topk|bottomk)\s*\(\s*\d+\s*,|==\s*0\b|>\s*0\b|reason\s*!=\s*\"ok\"")
# Metrics with a series only while something fails: a query of them alone is bounded by the
# failures (pullprobe_pod_image_pull_failure: a row per container that cannot pull).
FAILURE_ONLY_METRICS = {"pullprobe_pod_image_pull_failure"}
AGGREGATIONS = re.compile(r"\b(sum|count|min|max|avg|topk|bottomk|quantile|stddev|group)\b\s*(?:(by|without)\s*(\([^)]*\)))?\s*\(")


def check_panel_query(rep, where, panel, target, scrape_interval):
    """What promtool cannot see in a panel's query: `cluster` kept and selected, a window for
    $__rate_interval, and a number of series that stays readable at 5 000 nodes."""
    expr = target["expr"]
    check_cluster_kept(rep, where, expr)
    for sel in re.findall(r"\{([^}]*)\}", expr):
        if "$" in sel:
            rep.ok('cluster=~"$cluster"' in sel, f"{where}: selector {{{sel}}} filters by variables but not by $cluster")
    if "$__rate_interval" in expr:
        # Grafana computes $__rate_interval as max($__interval + S, 4 * S), S being the
        # query's min step (`interval`) or else the data source's scrape interval setting
        # (15s unless set). With the agents scraped every minute a 15s guess gives a window
        # of one sample or none: the query must say S.
        step = duration_seconds(target.get("interval") or panel.get("interval"))
        rep.ok(step is not None and step >= scrape_interval,
               f"{where}: uses $__rate_interval, so the query needs a min step (`interval`) of at least the scrape interval ({scrape_interval}s)")
    # One series per node (or node x target)? Only if bounded. The outermost aggregation
    # decides: one that groups by node (or none at all) keeps a series per node.
    outer = AGGREGATIONS.match(expr.strip())
    per_node = not outer or outer.group(2) == "without" or (
        outer.group(3) is not None and "node" in [n.strip() for n in outer.group(3).strip("()").split(",")])
    if per_node and not metric_names(expr) <= FAILURE_ONLY_METRICS:
        rep.ok(BOUNDED.search(expr), f"{where}: returns a series per node; bound it (topk/bottomk, or only failing series) so it stays readable at 5 000 nodes")


def cmd_dashboard(path, out_rule_file):
    rep = Report(f"dashboard {path}")
    scrape_interval = podmonitor_scrape_interval()
    d = json.load(open(path))
    rep.ok(d.get("uid") == "pullprobe-overview", "uid must stay pullprobe-overview")
    rep.ok(d.get("title"), "needs a title")
    variables = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
    ds = variables.get("datasource", {})
    rep.ok(ds.get("type") == "datasource" and ds.get("query") == "prometheus", "needs a prometheus datasource variable named datasource")
    exprs = []
    for name in ("cluster", "node", "target", "registry"):
        v = variables.get(name, {})
        if rep.ok(v.get("type") == "query", f"needs a query variable {name}"):
            q = v["query"]["query"] if isinstance(v.get("query"), dict) else v.get("query", "")
            m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", q.strip())
            if rep.ok(m and m.group(2) == name, f"variable {name}: expected label_values(<selector>, {name}), got {q!r}"):
                exprs.append((f"variable {name}", m.group(1), f"dashboard:variable_{name}"))
                if name != "cluster":
                    rep.ok('cluster=~"$cluster"' in m.group(1), f"variable {name}: its values must be those of the selected clusters (cluster=~\"$cluster\")")
            rep.ok(v.get("includeAll") and v.get("allValue") == ".*", f"variable {name}: needs All = .* (which also matches series without the label)")
            rep.ok(v.get("datasource", {}).get("uid") == "${datasource}", f"variable {name}: must use ${{datasource}}")

    def walk(panels):
        for p in panels:
            yield p
            yield from walk(p.get("panels", []))

    ids = []
    for p in walk(d.get("panels", [])):
        ids.append(p.get("id"))
        if p.get("type") == "row":
            continue
        where = f"panel {p.get('id')} {p.get('title')!r}"
        rep.ok(p.get("datasource", {}).get("uid") == "${datasource}", f"{where}: must use the ${{datasource}} variable")
        rep.ok(p.get("targets"), f"{where}: has no queries")
        for t in p.get("targets", []):
            rep.ok(t.get("datasource", {}).get("uid") == "${datasource}", f"{where} query {t.get('refId')}: must use ${{datasource}}")
            exprs.append((f"{where} query {t.get('refId')}", t["expr"], f"dashboard:panel_{p.get('id')}_{t.get('refId')}"))
            legend = re.findall(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}", t.get("legendFormat", ""))
            check_label_names(rep, f"{where} query {t.get('refId')}", t["expr"], legend)
            check_panel_query(rep, f"{where} query {t.get('refId')}", p, t, scrape_interval)
    rep.ok(len(ids) == len(set(ids)), "panel ids must be unique")
    rep.ok(len(exprs) > 3, "found almost no queries")

    used = set()
    for where, expr, _ in exprs:
        for m in metric_names(expr):
            used.add(m)
            rep.ok(m in AGENT_METRICS, f"{where}: uses {m!r}, not a metric the agent exports")
        for fn in re.findall(r"\b(rate|irate|increase)\s*\(", expr):
            rep.ok(re.search(r"\[\$__(rate_interval|range)\]", expr), f"{where}: {fn}() should use [$__rate_interval] (or [$__range])")
        check_label_values(rep, where, expr)
    for wanted in ("pullprobe_probe_success", "pullprobe_probe_result", "pullprobe_phase_duration_seconds",
                   "pullprobe_endpoint_success", "pullprobe_probe_consecutive_failures",
                   "pullprobe_ratelimit_remaining", "pullprobe_ratelimit_source_info",
                   "pullprobe_tls_cert_expiry_timestamp_seconds", "pullprobe_last_probe_timestamp_seconds",
                   "pullprobe_pod_image_pull_failure"):
        rep.ok(wanted in used, f"no panel shows {wanted}")

    rules = {"groups": [{"name": "dashboard-queries", "rules": [
        {"record": record, "expr": substitute(expr)} for _, expr, record in exprs]}]}
    with open(out_rule_file, "w") as f:
        yaml.safe_dump(rules, f, sort_keys=False)
    print(f"  {len(exprs)} queries written to {out_rule_file} as recording rules"
          " (dashboard:panel_<id>_<refId>) for promtool")
    return rep.finish()


def main(argv):
    if len(argv) >= 3 and argv[0] == "alerts":
        return cmd_alerts(argv[1], argv[2])
    if len(argv) >= 3 and argv[0] == "alert-tests":
        return cmd_alert_tests(argv[1], argv[2:])
    if len(argv) >= 3 and argv[0] == "prometheusrule":
        return cmd_prometheusrule(argv[1], argv[2])
    if len(argv) >= 2 and argv[0] == "manifests":
        return cmd_manifests(argv[1], "--host-network" in argv[2:])
    if len(argv) >= 3 and argv[0] == "selected-by":
        return cmd_selected_by(argv[1], argv[2])
    if len(argv) >= 3 and argv[0] == "pod-watch-modes":
        return cmd_pod_watch_modes(argv[1], argv[2])
    if len(argv) >= 4 and argv[0] == "node-fixture-config":
        return cmd_node_fixture_config(argv[1], argv[2], argv[3])
    if len(argv) >= 3 and argv[0] == "dashboard":
        return cmd_dashboard(argv[1], argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
