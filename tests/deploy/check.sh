#!/usr/bin/env bash
# Checks the shipping artifacts: Dockerfile, kustomizations, alert rules and their unit tests,
# the generated PrometheusRule, and the Grafana dashboard. Run from anywhere:
#   bash tests/deploy/check.sh
#
# Tools (scripts/test installs them at pinned versions; see the top of scripts/test):
#   apt-get install -y prometheus prometheus-alertmanager  # promtool 2.42, amtool 0.25
#   the PyPI tools at the versions pinned in scripts/requirements-tools.txt
#   kubectl (v1.32, with its built-in kustomize v5.5) must be on PATH.
#   cargo: the agent itself loads every overlay's config.yaml (it is built here, debug).
#
# kubernetes-validate has no schemas for prometheus-operator's CRDs: PodMonitor and
# PrometheusRule are skipped by it (any other kind it cannot validate fails the check). They
# are checked here instead: the PrometheusRule's spec must equal rules.yaml, and the PodMonitor
# must relabel the node name into `node`.
set -euo pipefail

cd "$(dirname "$0")/../.."
# Kubernetes releases to validate the rendered manifests against: an older one still in wide
# support and the newest kubernetes-validate 1.37.0 knows.
K8S_VERSIONS=(1.33.0 1.37.0)
CRD_KINDS='PodMonitor|PrometheusRule'

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failures=0
passes=0
step() { printf '\n== %s\n' "$*"; }
ok() {
	printf 'ok: %s\n' "$*"
	passes=$((passes + 1))
}
fail() {
	printf 'FAIL: %s\n' "$*"
	failures=$((failures + 1))
}

for tool in kubectl kubernetes-validate hadolint promtool amtool python3 checkov cargo; do
	command -v "$tool" >/dev/null || {
		echo "missing tool: $tool (see the install commands at the top of $0)" >&2
		exit 2
	}
done
python3 -c 'import yaml' 2>/dev/null || {
	echo "missing Python module yaml: pip install pyyaml" >&2
	exit 2
}

step "hadolint Dockerfile"
if hadolint Dockerfile; then ok "Dockerfile lints clean"; else fail "hadolint Dockerfile"; fi

step "Dockerfile essentials"
for pattern in '^FROM .* AS build$' 'cargo build --release --locked' '^FROM gcr.io/distroless/static-debian12:nonroot$' \
	'^USER 65532:65532$' '^EXPOSE 9865$' '^ENTRYPOINT \["/pullprobe"\]$' 'org.opencontainers.image.source='; do
	if grep -Eq -- "$pattern" Dockerfile; then ok "$pattern"; else fail "Dockerfile lacks $pattern"; fi
done

# render_and_validate DIR OUT [NAME]: kubectl kustomize DIR into OUT, validate it strictly against
# every Kubernetes release in K8S_VERSIONS, and run the hardening lint (which includes the hostPath
# allowlist and "every node path config.yaml names is mounted"). Messages call it NAME (or DIR).
render_and_validate() {
	local path=$1 out=$2 dir=${3:-$1} v unknown kinds host_network
	if ! kubectl kustomize "$path" >"$out" 2>"$work/err"; then
		cat "$work/err"
		fail "kubectl kustomize $dir"
		rm -f "$out"
		return
	fi
	rendered_any=1
	kinds=$(grep -E '^kind: ' "$out" | sed 's/^kind: //' | sort | uniq -c | awk '{printf "%s%s×%s", sep, $2, $1; sep=", "}')
	echo "rendered $dir: $kinds"
	for v in "${K8S_VERSIONS[@]}"; do
		if ! kubernetes-validate --strict --quiet --kubernetes-version "$v" "$out" >"$work/kv" 2>&1; then
			cat "$work/kv"
			fail "kubernetes-validate --strict ($v) on $dir"
			continue
		fi
		unknown=$(grep "Couldn't find schema" "$work/kv" | grep -Ev "kind ($CRD_KINDS) " || true)
		if [ -n "$unknown" ]; then
			echo "$unknown"
			fail "$dir has kinds that kubernetes-validate cannot check"
		else
			ok "$dir validates strictly against Kubernetes $v (CRDs skipped: $(grep -cE "kind ($CRD_KINDS) " "$work/kv" || true))"
		fi
	done
	host_network=--host-network
	[[ $dir == *pod-network* ]] && host_network=
	if python3 tests/deploy/lint.py manifests "$out" $host_network; then ok "hardening of $dir"; else fail "hardening checks on $dir"; fi
}

step "kustomize: render and validate every kustomization under deploy/"
rendered_any=0
components=()
while IFS= read -r kfile; do
	dir=$(dirname "$kfile")
	if grep -q '^kind: Component' "$kfile"; then
		echo "later: $dir (a Component: rendered on the base below)"
		components+=("$dir")
		continue
	fi
	render_and_validate "$dir" "$work/${dir//\//_}.yaml"
done < <(find deploy -name kustomization.yaml | sort)
[ "$rendered_any" = 1 ] || fail "no kustomization rendered"

step "kustomize: every Component on the base alone"
# The overlays render the combinations we ship; this renders each Component by itself on the base,
# so that none (e.g. the node-config pieces, meant to be picked per cluster) goes unvalidated.
# prometheus-operator comes along, since secure-metrics patches its PodMonitor. The results go
# through the same checks, and to checkov below, as deploy_components_*.yaml.
# A Component that only patches another one's objects comes after that one (kustomize does not
# let a sub-directory include its parent, and on its own its patch would match nothing):
declare -A requires=(
	[deploy/components/pod-watch/node-credentials-only]=deploy/components/pod-watch
)
for dir in "${components[@]}"; do
	tmp="$work/alone/${dir//\//_}"
	mkdir -p "$tmp"
	rel=$(realpath --relative-to="$tmp" .)
	{
		printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: pullprobe\n'
		printf 'resources:\n  - %s/deploy/base\ncomponents:\n' "$rel"
		[ "$dir" = deploy/components/prometheus-operator ] || printf '  - %s/deploy/components/prometheus-operator\n' "$rel"
		[ -z "${requires[$dir]:-}" ] || printf '  - %s/%s\n' "$rel" "${requires[$dir]}"
		printf '  - %s/%s\n' "$rel" "$dir"
	} >"$tmp/kustomization.yaml"
	render_and_validate "$tmp" "$work/${dir//\//_}.yaml" "$dir on the base"
done
[ "${#components[@]}" -gt 0 ] || fail "no Component found"

step "pod-watch: node-credentials-only drops the secrets rule and nothing else"
if python3 tests/deploy/lint.py pod-watch-modes "$work/deploy_components_pod-watch.yaml" "$work/deploy_components_pod-watch_node-credentials-only.yaml"; then
	ok "node-credentials-only is pod-watch without reading secrets"
else
	fail "node-credentials-only's ClusterRole"
fi

step "every overlay's config.yaml loads in the agent, with the node's files as fixtures"
# kubectl kustomize checks the YAML around config.yaml, not config.yaml itself. The agent loads
# each overlay's config as on a node (kubelet's credential-provider config decoded and
# validated, its bin directory checked), its node paths moved under a copy of
# tests/deploy/node-fixtures, and probes one loopback address instead of the targets (no other
# network): exit 2 (the config is rejected) fails; 0 or 1 (the probe's verdict) passes.
if cargo build --quiet --locked --bin pullprobe 2>"$work/err"; then
	pullprobe="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/debug/pullprobe"
	node="$work/node"
	cp -r tests/deploy/node-fixtures "$node"
	# The plugins the fixture configs name, as executables (never run: no target matches them).
	printf '#!/bin/sh\nexit 1\n' >"$node/etc/eks/image-credential-provider/ecr-credential-provider"
	chmod 755 "$node/etc/eks/image-credential-provider/ecr-credential-provider"
	mkdir -p "$node/etc/pullprobe/docker"
	cp deploy/base/anonymous-credentials.json "$node/etc/pullprobe/docker/config.json"
	for rendered in "$work"/deploy_overlays_*.yaml; do
		name=$(basename "$rendered" .yaml)
		python3 tests/deploy/lint.py node-fixture-config "$rendered" "$node" "$work/$name.config.yaml"
		rc=0
		# The environment the rendered DaemonSet gives: NODE_NAME from the downward API where the
		# pod-watch component sets it (pods.watch needs it), and nothing otherwise.
		node_env=()
		if grep -q 'name: NODE_NAME' "$rendered"; then node_env=(NODE_NAME=fixture-node); fi
		env -u NODE_NAME "${node_env[@]}" "$pullprobe" --check --config.file="$work/$name.config.yaml" 127.0.0.1:1/pullprobe/config-check:1 >"$work/pc" 2>&1 || rc=$?
		if [ "$rc" = 0 ] || [ "$rc" = 1 ]; then
			ok "config.yaml of $name loads in the agent"
		else
			cat "$work/pc"
			fail "the agent rejects config.yaml of $name (exit $rc)"
		fi
	done
else
	cat "$work/err"
	fail "cargo build --bin pullprobe"
fi

step "checkov on the rendered manifests (offline)"
# Deliberate exceptions are skipped on the resource itself with a written reason
# (checkov.io/skipN annotations in deploy/base/daemonset.yaml); anything else fails.
mkdir -p "$work/checkov"
cp "$work"/deploy_*.yaml "$work/checkov/"
if checkov -d "$work/checkov" --framework kubernetes --skip-download --compact --quiet >"$work/ck" 2>&1; then
	ok "checkov: $(grep -E 'Passed checks' "$work/ck" | tr -s ' ')"
else
	cat "$work/ck"
	fail "checkov found problems in the rendered manifests"
fi

step "alert rules: promtool check rules"
if promtool check rules deploy/prometheus/rules.yaml; then ok "promtool check rules"; else fail "promtool check rules"; fi

step "alert rules: promtool unit tests"
if promtool test rules tests/alerts/*.test.yaml; then ok "promtool test rules"; else fail "promtool test rules"; fi

step "alert rules: every alert is unit-tested firing and not firing"
if python3 tests/deploy/lint.py alert-tests deploy/prometheus/rules.yaml tests/alerts/*.test.yaml; then ok "alert unit-test coverage"; else fail "alert unit-test coverage"; fi

step "alert rules: conventions (severity, summary, description, runbook_url, names)"
if python3 tests/deploy/lint.py alerts deploy/prometheus/rules.yaml docs/runbook.md; then ok "alert conventions"; else fail "alert conventions"; fi

step "PrometheusRule cannot drift from rules.yaml"
if deploy/prometheus/generate-prometheusrule.sh --check; then ok "generated PrometheusRule is current"; else fail "regenerate the PrometheusRule: deploy/prometheus/generate-prometheusrule.sh"; fi
for overlay in "$work"/deploy_overlays_*.yaml; do
	grep -q '^kind: PrometheusRule' "$overlay" || continue
	if python3 tests/deploy/lint.py prometheusrule "$overlay" deploy/prometheus/rules.yaml; then
		ok "rendered PrometheusRule of $(basename "$overlay" .yaml) equals rules.yaml"
	else
		fail "rendered PrometheusRule in $overlay"
	fi
done

step "kube-prometheus-stack: its Prometheus selects the PodMonitor and the PrometheusRule"
# kube-prometheus-stack's Prometheus selects both by `release: <Helm release name>`
# (podMonitorSelectorNilUsesHelmValues / ruleSelectorNilUsesHelmValues); without the label
# nothing is scraped and no rule loads.
rendered="$work/deploy_overlays_kube-prometheus-stack.yaml"
if [ -s "$rendered" ] && python3 tests/deploy/lint.py selected-by "$rendered" release=kube-prometheus-stack; then
	ok "the kube-prometheus-stack overlay is selected by release=kube-prometheus-stack"
else
	fail "the kube-prometheus-stack overlay's PodMonitor or PrometheusRule lacks release=kube-prometheus-stack"
fi

step "Alertmanager example: valid, and routes every alert by its severity"
am=deploy/prometheus/alertmanager-example.yml
if amtool check-config "$am" >"$work/am" 2>&1; then
	ok "amtool check-config $am"
	while read -r alert severity; do
		want=$(case $severity in critical) echo pager ;; warning) echo tickets ;; *) echo blackhole ;; esac)
		got=$(amtool config routes test --config.file="$am" "alertname=$alert" "severity=$severity" 2>/dev/null)
		if [ "$got" = "$want" ]; then
			ok "$alert ($severity) -> $got"
		else
			fail "$alert ($severity) routes to '$got', expected $want"
		fi
	done < <(python3 -c 'import yaml; print("\n".join(sorted({r["alert"] + " " + r["labels"]["severity"] for g in yaml.safe_load(open("deploy/prometheus/rules.yaml"))["groups"] for r in g["rules"] if "alert" in r})))')
else
	cat "$work/am"
	fail "amtool check-config $am"
fi

step "dashboard: structure, metric names, and every query parses"
for dash in dashboards/*.json; do
	rulefile="$work/$(basename "$dash" .json).rules.yaml"
	if python3 tests/deploy/lint.py dashboard "$dash" "$rulefile"; then ok "dashboard checks on $dash"; else fail "dashboard checks on $dash"; fi
	if [ ! -s "$rulefile" ]; then
		fail "no queries extracted from $dash"
	elif promtool check rules "$rulefile" >"$work/pt" 2>&1; then
		ok "every query of $dash parses ($(grep -o 'SUCCESS.*' "$work/pt"))"
	else
		cat "$work/pt"
		fail "a query of $dash does not parse"
	fi
done

echo
echo "deploy: $passes passed, $failures failed"
[ "$failures" -eq 0 ]
