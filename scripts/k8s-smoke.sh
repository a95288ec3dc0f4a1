#!/usr/bin/env bash
# Smoke test for the locally built Kubernetes control plane (see k8s-tools.sh):
# starts etcd + kube-apiserver on 127.0.0.1 (random free ports, temp dir),
# waits for /readyz, creates a namespace and a CRD with a CEL
# x-kubernetes-validations rule, checks the rule is enforced, then tears
# everything down (trap on EXIT).  No traffic leaves 127.0.0.1.
#
# Usage:
#   scripts/k8s-smoke.sh            run the smoke test and exit
#   K8S_SMOKE_HOLD=1 scripts/k8s-smoke.sh
#                                   same, but keep the control plane running
#                                   until Ctrl-C (prints KUBECONFIG to use)
#   K8S_SMOKE_PKI=python              generate keys/certs with python
#                                   `cryptography` instead of openssl
#   MAIL_PROXY_K8S_BIN=<dir>          use binaries from <dir> (default:
#                                   `scripts/k8s-tools.sh path`, builds if needed)
#
# Notes / gotchas (also valid for test fixtures that reuse these flags):
#   * There is no kube-controller-manager: namespaces never finish deleting,
#     Deployments never get Pods, and no "default" ServiceAccount is created.
#     That is why the ServiceAccount admission plugin is disabled (as
#     controller-runtime's envtest does); otherwise creating Pods fails.
#   * Auth is a static bearer token in group system:masters (token-auth-file).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf '[k8s-smoke] %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

BIN_DIR="${MAIL_PROXY_K8S_BIN:-$("$here/k8s-tools.sh" path)}"
for b in etcd kube-apiserver; do
  [[ -x "$BIN_DIR/$b" ]] || die "$BIN_DIR/$b missing (run scripts/k8s-tools.sh)"
done
KUBECTL=""
[[ -x "$BIN_DIR/kubectl" ]] && KUBECTL="$BIN_DIR/kubectl"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/mail-proxy-k8s-smoke.XXXXXX")"
ETCD_PID=""
APISERVER_PID=""

stop_pid() {
  local pid="$1" name="$2"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name did not stop on SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  if [[ "${K8S_SMOKE_HOLD:-0}" == 1 && -n "${HOLDING:-}" ]] && (( rc == 130 || rc == 143 )); then
    log "stopping (signal)"; rc=0
  fi
  if (( rc != 0 )); then
    for f in "$TMP/kube-apiserver.log" "$TMP/etcd.log"; do
      [[ -f "$f" ]] || continue
      log "---- last lines of $(basename "$f") ----"
      tail -n 40 "$f" >&2 || true
    done
  fi
  stop_pid "$APISERVER_PID" kube-apiserver
  stop_pid "$ETCD_PID" etcd
  rm -rf "$TMP"
  if (( rc == 0 )); then log "OK (cleaned up $TMP)"; else log "failed (rc=$rc), cleaned up"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- free ports on 127.0.0.1 -------------------------------------------------
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
  else
    local p
    while :; do
      p=$(( 20000 + RANDOM % 40000 ))
      (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
  fi
}
ETCD_CLIENT_PORT="$(free_port)"
ETCD_PEER_PORT="$(free_port)"
while [[ "$ETCD_PEER_PORT" == "$ETCD_CLIENT_PORT" ]]; do ETCD_PEER_PORT="$(free_port)"; done
API_PORT="$(free_port)"
while [[ "$API_PORT" == "$ETCD_CLIENT_PORT" || "$API_PORT" == "$ETCD_PEER_PORT" ]]; do API_PORT="$(free_port)"; done
ETCD_URL="http://127.0.0.1:$ETCD_CLIENT_PORT"
ETCD_PEER_URL="http://127.0.0.1:$ETCD_PEER_PORT"
API_URL="https://127.0.0.1:$API_PORT"

# --- credentials -------------------------------------------------------------
PKI="$TMP/pki"; mkdir -p "$PKI"
if [[ "${K8S_SMOKE_PKI:-openssl}" == openssl ]] && command -v openssl >/dev/null 2>&1; then
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 \
    -keyout "$PKI/apiserver.key" -out "$PKI/apiserver.crt" \
    -subj "/CN=127.0.0.1" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -addext "basicConstraints=critical,CA:TRUE" 2>/dev/null
else
  log "generating keys with python cryptography (openssl unavailable or K8S_SMOKE_PKI=python)"
  python3 - "$PKI" <<'EOF'
import datetime, ipaddress, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
d = sys.argv[1]
def key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)
def write_key(k, path):
    open(path, "wb").write(k.private_bytes(serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
sa = key(); write_key(sa, f"{d}/sa.key")
open(f"{d}/sa.pub", "wb").write(sa.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
k = key(); write_key(k, f"{d}/apiserver.key")
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(k.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(k, hashes.SHA256()))
open(f"{d}/apiserver.crt", "wb").write(cert.public_bytes(serialization.Encoding.PEM))
EOF
fi
TOKEN="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s,admin,admin-uid,"system:masters"\n' "$TOKEN" >"$PKI/tokens.csv"
chmod 600 "$PKI"/*

cat >"$TMP/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: smoke
  cluster:
    server: $API_URL
    certificate-authority: $PKI/apiserver.crt
users:
- name: admin
  user:
    token: $TOKEN
contexts:
- name: smoke
  context: {cluster: smoke, user: admin}
current-context: smoke
EOF

# --- etcd --------------------------------------------------------------------
log "starting etcd on $ETCD_URL (peer $ETCD_PEER_URL)"
"$BIN_DIR/etcd" \
  --name=smoke \
  --data-dir="$TMP/etcd" \
  --listen-client-urls="$ETCD_URL" \
  --advertise-client-urls="$ETCD_URL" \
  --listen-peer-urls="$ETCD_PEER_URL" \
  --initial-advertise-peer-urls="$ETCD_PEER_URL" \
  --initial-cluster="smoke=$ETCD_PEER_URL" \
  --unsafe-no-fsync=true \
  --log-level=warn \
  >"$TMP/etcd.log" 2>&1 &
ETCD_PID=$!

t0=$SECONDS
until curl -fsS --max-time 2 "$ETCD_URL/health" 2>/dev/null | grep -q '"health":"true"'; do
  kill -0 "$ETCD_PID" 2>/dev/null || die "etcd exited early"
  (( SECONDS - t0 < 30 )) || die "etcd not healthy after 30s"
  sleep 0.2
done
log "etcd healthy after $(( SECONDS - t0 ))s"

# --- kube-apiserver ----------------------------------------------------------
APISERVER_ARGS=(
  --bind-address=127.0.0.1
  --advertise-address=127.0.0.1
  --secure-port="$API_PORT"
  --etcd-servers="$ETCD_URL"
  --tls-cert-file="$PKI/apiserver.crt"
  --tls-private-key-file="$PKI/apiserver.key"
  --cert-dir="$TMP/cert-dir"
  --token-auth-file="$PKI/tokens.csv"
  --authorization-mode=RBAC
  --service-account-issuer="$API_URL"
  --service-account-key-file="$PKI/sa.pub"
  --service-account-signing-key-file="$PKI/sa.key"
  --service-cluster-ip-range=10.0.0.0/24
  --allow-privileged=true
  --disable-admission-plugins=ServiceAccount
  # 127.0.0.1 as advertise address is rejected by the default "lease"
  # endpoint reconciler ("may not be in the loopback range"):
  --endpoint-reconciler-type=none
)
log "starting kube-apiserver on $API_URL"
log "  kube-apiserver ${APISERVER_ARGS[*]}"
start_ns=$(date +%s%N)
"$BIN_DIR/kube-apiserver" "${APISERVER_ARGS[@]}" >"$TMP/kube-apiserver.log" 2>&1 &
APISERVER_PID=$!

CURL=(curl -sS --max-time 5 --cacert "$PKI/apiserver.crt" -H "Authorization: Bearer $TOKEN")
until [[ "$("${CURL[@]}" -o /dev/null -w '%{http_code}' "$API_URL/readyz" 2>/dev/null)" == 200 ]]; do
  kill -0 "$APISERVER_PID" 2>/dev/null || die "kube-apiserver exited early"
  (( ($(date +%s%N) - start_ns) / 1000000000 < 120 )) || {
    "${CURL[@]}" "$API_URL/readyz?verbose" >&2 || true
    die "kube-apiserver not ready after 120s"
  }
  sleep 0.25
done
ready_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
log "kube-apiserver ready after ${ready_ms} ms"
log "server version: $("${CURL[@]}" "$API_URL/version" | tr -d ' \n')"

# --- API calls ---------------------------------------------------------------
NS=smoke-test
CRD_YAML="$TMP/crd.yaml"
cat >"$CRD_YAML" <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.mail-proxy.dev
spec:
  group: smoke.mail-proxy.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [replicas]
            properties:
              replicas: {type: integer, minimum: 0}
              maxReplicas: {type: integer}
            x-kubernetes-validations:
            - rule: "!has(self.maxReplicas) || self.replicas <= self.maxReplicas"
              message: "replicas must not exceed maxReplicas"
EOF
good='{"apiVersion":"smoke.mail-proxy.dev/v1","kind":"Widget","metadata":{"name":"good"},"spec":{"replicas":1,"maxReplicas":3}}'
bad='{"apiVersion":"smoke.mail-proxy.dev/v1","kind":"Widget","metadata":{"name":"bad"},"spec":{"replicas":5,"maxReplicas":3}}'

if [[ -n "$KUBECTL" ]]; then
  log "using kubectl ($KUBECTL)"
  export KUBECONFIG="$TMP/kubeconfig"
  "$KUBECTL" version >&2
  "$KUBECTL" create namespace "$NS" >&2
  "$KUBECTL" apply -f "$CRD_YAML" >&2
  "$KUBECTL" wait --for=condition=Established --timeout=60s crd/widgets.smoke.mail-proxy.dev >&2
  # discovery of the new resource can lag a moment behind Established
  for _ in $(seq 1 40); do
    "$KUBECTL" api-resources --api-group=smoke.mail-proxy.dev -o name 2>/dev/null | grep -q widgets && break
    sleep 0.25
  done
  echo "$good" | "$KUBECTL" -n "$NS" apply -f - >&2
  if out="$(echo "$bad" | "$KUBECTL" -n "$NS" apply -f - 2>&1)"; then
    die "CEL rule not enforced: $out"
  fi
  grep -q "replicas must not exceed maxReplicas" <<<"$out" || die "unexpected error: $out"
  log "CEL validation rejected bad object: $(tr '\n' ' ' <<<"$out")"
  "$KUBECTL" -n "$NS" get widgets >&2
else
  log "kubectl not built; using curl"
  "${CURL[@]}" -f -H 'Content-Type: application/json' -X POST "$API_URL/api/v1/namespaces" \
    -d "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"$NS\"}}" >/dev/null
  "${CURL[@]}" -f -H 'Content-Type: application/yaml' -X POST \
    "$API_URL/apis/apiextensions.k8s.io/v1/customresourcedefinitions" --data-binary "@$CRD_YAML" >/dev/null
  url="$API_URL/apis/smoke.mail-proxy.dev/v1/namespaces/$NS/widgets"
  for _ in $(seq 1 120); do
    [[ "$("${CURL[@]}" -o /dev/null -w '%{http_code}' "$url")" == 200 ]] && break
    sleep 0.25
  done
  "${CURL[@]}" -f -H 'Content-Type: application/json' -X POST "$url" -d "$good" >/dev/null
  code="$("${CURL[@]}" -o "$TMP/bad.json" -w '%{http_code}' -H 'Content-Type: application/json' -X POST "$url" -d "$bad")"
  [[ "$code" == 422 ]] || die "CEL rule not enforced (HTTP $code): $(cat "$TMP/bad.json")"
  grep -q "replicas must not exceed maxReplicas" "$TMP/bad.json" || die "unexpected error: $(cat "$TMP/bad.json")"
  log "CEL validation rejected bad object (HTTP 422)"
fi

if [[ "${K8S_SMOKE_HOLD:-0}" == 1 ]]; then
  log "holding; use: KUBECONFIG=$TMP/kubeconfig $BIN_DIR/kubectl get ns   (Ctrl-C to stop)"
  HOLDING=1
  wait "$APISERVER_PID" || die "kube-apiserver exited"
fi
log "smoke test passed"
