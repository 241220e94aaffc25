#!/bin/sh
# Builds the prometheus-operator PrometheusRule from rules.yaml, the single source of the alert
# rules: the rule file's `groups:` document becomes the object's `spec`, byte for byte, only
# indented. kustomize cannot do this itself (it embeds files only as strings, in ConfigMaps),
# and Prometheus rejects unknown keys in rule files, so one file cannot be both.
#
#   deploy/prometheus/generate-prometheusrule.sh          rewrite the PrometheusRule
#   deploy/prometheus/generate-prometheusrule.sh --check  exit 1 if it is out of date
set -eu

here=$(cd "$(dirname "$0")" && pwd)
src="$here/rules.yaml"
out="$(cd "$here/../components/prometheus-operator" && pwd)/prometheusrule.yaml"

generate() {
	cat <<'HEADER'
# GENERATED from deploy/prometheus/rules.yaml by deploy/prometheus/generate-prometheusrule.sh.
# Do not edit: edit rules.yaml and rerun the script. tests/deploy/check.sh fails on any drift.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: pullprobe
  labels:
    app.kubernetes.io/name: pullprobe
    app.kubernetes.io/instance: pullprobe
    app.kubernetes.io/component: monitoring
    app.kubernetes.io/part-of: pullprobe
    app.kubernetes.io/managed-by: kustomize
    # What kube-prometheus' Prometheus selected rules by before its ruleSelector became {}
    # (all); kube-prometheus-stack selects by `release` (components/kube-prometheus-stack).
    prometheus: k8s
    role: alert-rules
spec:
HEADER
	# From `groups:` on (the file's header comment is about the file), indented by two spaces;
	# empty lines stay empty.
	sed -n '/^groups:/,$p' "$src" | sed 's/^./  &/'
}

case "${1:-}" in
--check)
	if generate | cmp -s - "$out"; then
		echo "prometheusrule.yaml is up to date with rules.yaml"
	else
		echo "prometheusrule.yaml differs from rules.yaml; run $0" >&2
		generate | diff -u "$out" - >&2 || true
		exit 1
	fi
	;;
"")
	generate >"$out"
	echo "wrote $out"
	;;
*)
	echo "usage: $0 [--check]" >&2
	exit 2
	;;
esac
