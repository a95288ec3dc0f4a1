#!/usr/bin/env bash
# Build (once) and cache the Kubernetes test tool-chain used by mail-proxy:
#
#   kube-apiserver, kubectl  k8s.io/kubernetes/cmd/...   (throwaway module + staging replaces)
#   etcd                     go.etcd.io/etcd/server/v3/etcdmain (throwaway module, tiny main)
#   helm                     helm.sh/helm/v3/cmd/helm         (go install pkg@version)
#   kubeconform              github.com/yannh/kubeconform/cmd/kubeconform (go install pkg@version)
#
# Everything is built from Go modules through the Go module proxy (no release
# downloads).  Binaries land OUTSIDE the repository in
#
#   ${MAIL_PROXY_TOOLS_CACHE:-$HOME/.cache/mail-proxy/envtest}/<kube version>/bin/
#
# which has the layout controller-runtime's envtest expects for
# KUBEBUILDER_ASSETS (etcd, kube-apiserver, kubectl side by side).
#
# Usage:
#   scripts/k8s-tools.sh [build]   build what is missing, print binary paths (stdout)
#   scripts/k8s-tools.sh path      build what is missing, print ONLY the bin dir (stdout)
#   scripts/k8s-tools.sh env       build what is missing, print `export ...` lines for eval
#   scripts/k8s-tools.sh versions  print the pinned versions
#   scripts/k8s-tools.sh rebuild   rebuild everything, ignoring the cache
#
# Idempotent: when every binary exists with a matching version stamp it only
# prints and exits 0 (no Go invocation at all).  Progress goes to stderr.
#
# Knobs (environment):
#   MAIL_PROXY_TOOLS_CACHE   cache root (default $HOME/.cache/mail-proxy/envtest)
#   MAIL_PROXY_TOOLS_JOBS    go build -p / GOMAXPROCS (default: nproc, max 4)
#   MAIL_PROXY_TOOLS_KUBECTL set to 0 to skip building kubectl
#   GOCACHE, GOMODCACHE, GOPROXY, GOFLAGS are honoured (GOCACHE defaults to
#   $HOME/.cache/go-build so repeated builds are incremental).
set -euo pipefail

# ---------------------------------------------------------------------------
# Pins.  KUBE_VERSION must build with the installed Go (v1.37.x needs go>=1.26);
# the staging modules (k8s.io/api, apimachinery, ...) are published as
# v0.<minor>.<patch> of the same release.  ETCD_VERSION follows the etcd line
# that k8s.io/kubernetes itself depends on (go.etcd.io/etcd/client/v3 v3.7.x).
# ---------------------------------------------------------------------------
KUBE_VERSION="v1.37.2"
ETCD_VERSION="v3.7.3"
HELM_VERSION="v3.22.0"
KUBECONFORM_VERSION="v0.8.0"

CACHE_ROOT="${MAIL_PROXY_TOOLS_CACHE:-$HOME/.cache/mail-proxy/envtest}"
VERSION_DIR="$CACHE_ROOT/${KUBE_VERSION#v}"
BIN_DIR="$VERSION_DIR/bin"
WANT_KUBECTL="${MAIL_PROXY_TOOLS_KUBECTL:-1}"

log() { printf '[k8s-tools] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
}

tools() {
  local list=(etcd kube-apiserver helm kubeconform)
  [[ "$WANT_KUBECTL" == 0 ]] || list+=(kubectl)
  printf '%s\n' "${list[@]}"
}

tool_version() {
  case "$1" in
    kube-apiserver|kubectl) echo "$KUBE_VERSION" ;;
    etcd) echo "$ETCD_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    kubeconform) echo "$KUBECONFORM_VERSION" ;;
    *) die "unknown tool $1" ;;
  esac
}

# A tool is up to date when its binary is executable and its stamp file records
# the pinned version (so bumping a pin above triggers a rebuild of that tool).
is_fresh() {
  local t="$1"
  [[ -x "$BIN_DIR/$t" && -f "$BIN_DIR/.$t.version" ]] &&
    [[ "$(cat "$BIN_DIR/.$t.version")" == "$(tool_version "$t")" ]]
}

missing_tools() {
  local t
  while read -r t; do
    is_fresh "$t" || echo "$t"
  done < <(tools)
}

print_result() {
  case "$1" in
    path) echo "$BIN_DIR" ;;
    env)
      # shellcheck disable=SC2016  # $PATH is expanded by the caller's eval
      printf 'export PATH=%q:"$PATH"\n' "$BIN_DIR"
      printf 'export KUBEBUILDER_ASSETS=%q\n' "$BIN_DIR"
      printf 'export MAIL_PROXY_K8S_BIN=%q\n' "$BIN_DIR"
      ;;
    *) local t; while read -r t; do echo "$BIN_DIR/$t"; done < <(tools) ;;
  esac
}

# ---------------------------------------------------------------------------
# Go environment
# ---------------------------------------------------------------------------
setup_go_env() {
  command -v go >/dev/null 2>&1 || die "go not found on PATH (need Go >= 1.26)"
  local jobs="${MAIL_PROXY_TOOLS_JOBS:-}"
  if [[ -z "$jobs" ]]; then
    jobs="$(nproc 2>/dev/null || echo 2)"
    (( jobs > 4 )) && jobs=4   # linking kube binaries is memory hungry
  fi
  JOBS="$jobs"
  export GOMAXPROCS="${GOMAXPROCS:-$JOBS}"
  export GOCACHE="${GOCACHE:-$HOME/.cache/go-build}"
  export GOFLAGS="${GOFLAGS:--buildvcs=false}"
  export CGO_ENABLED=0
  export GOWORK=off          # never pick up a go.work from an enclosing dir
  export GO111MODULE=on
  unset GOBIN
  log "using $(go version) (GOCACHE=$GOCACHE, -p $JOBS, GOPROXY=$(go env GOPROXY))"
}

elapsed() { echo "$(( SECONDS - $1 ))s"; }

# Install a freshly built binary atomically (same filesystem -> rename) and
# record its version stamp.
install_bin() {
  local src="$1" name="$2" version="$3"
  [[ -x "$src" ]] || die "build of $name produced no binary at $src"
  mv -f "$src" "$BIN_DIR/$name"
  echo "$version" >"$BIN_DIR/.$name.version"
  log "installed $BIN_DIR/$name ($version)"
}

# ---------------------------------------------------------------------------
# kube-apiserver / kubectl
# ---------------------------------------------------------------------------
build_kube() {
  local work="$1"; shift
  local targets=("$@") mod staging_version modfile m t start
  local minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
  staging_version="v0.${KUBE_VERSION#v1.}"

  mod="$work/kube"; mkdir -p "$mod"
  start=$SECONDS
  log "kube: preparing throwaway module for k8s.io/kubernetes@$KUBE_VERSION in $mod"
  (
    cd "$mod"
    go mod init mail-proxy.local/k8s-tools/kube >/dev/null 2>&1
    modfile="$(go list -m -f '{{.GoMod}}' "k8s.io/kubernetes@$KUBE_VERSION")"
    [[ -f "$modfile" ]] || die "could not fetch go.mod of k8s.io/kubernetes@$KUBE_VERSION"
    # Every staging module is `replace k8s.io/x => ./staging/src/k8s.io/x` in
    # the kubernetes go.mod (and required as v0.0.0).  Replace the ones that
    # are actually required with their published release tag.  (Unrequired
    # ones such as k8s.io/sample-controller may not even exist on the proxy.)
    local n=0
    while read -r m; do
      if grep -Eq "^[[:space:]]+${m//./\\.} v0\.0\.0([[:space:]]|$)" "$modfile"; then
        go mod edit -replace="$m=$m@$staging_version"
        n=$((n + 1))
      fi
    done < <(awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$modfile")
    (( n > 0 )) || die "found no staging replaces in $modfile"
    log "kube: replaced $n staging modules with @$staging_version"
    local pkgs=()
    for t in "${targets[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$t@$KUBE_VERSION"); done
    go get "${pkgs[@]}" >&2
  )
  log "kube: module resolved in $(elapsed "$start")"

  # Same ldflags as hack/lib/version.sh; tags as hack/lib/golang.sh (non-debug).
  local ldflags="-s -w" date key val
  date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  for kv in "gitVersion=$KUBE_VERSION" "gitMajor=1" "gitMinor=$minor" \
            "gitTreeState=clean" "gitCommit=module-$KUBE_VERSION" "buildDate=$date"; do
    key="${kv%%=*}"; val="${kv#*=}"
    ldflags+=" -X k8s.io/component-base/version.$key=$val -X k8s.io/client-go/pkg/version.$key=$val"
  done

  for t in "${targets[@]}"; do
    start=$SECONDS
    log "kube: building $t (slowest step: ~3.5 min cold on 2 cores)"
    (
      cd "$mod"
      go build -mod=mod -p "$JOBS" -trimpath -tags=selinux,notest,grpcnotrace \
        -ldflags="$ldflags" -o "$work/out/$t" "k8s.io/kubernetes/cmd/$t"
    )
    install_bin "$work/out/$t" "$t" "$KUBE_VERSION"
    log "kube: $t built in $(elapsed "$start")"
  done
}

# ---------------------------------------------------------------------------
# etcd: go.etcd.io/etcd/v3 (the repo-root main) only builds inside the etcd
# repo because of its ./server replaces, so wrap etcdmain in a tiny main.
# ---------------------------------------------------------------------------
build_etcd() {
  local work="$1" mod="$1/etcd" start=$SECONDS
  mkdir -p "$mod"
  log "etcd: preparing throwaway module for go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  (
    cd "$mod"
    go mod init mail-proxy.local/k8s-tools/etcd >/dev/null 2>&1
    cat >main.go <<'EOF'
// Command etcd is the upstream etcd server (go.etcd.io/etcd/server/v3/etcdmain).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2
    go build -mod=mod -p "$JOBS" -trimpath \
      -ldflags="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=module-$ETCD_VERSION" \
      -o "$work/out/etcd" .
  )
  install_bin "$work/out/etcd" etcd "$ETCD_VERSION"
  log "etcd: built in $(elapsed "$start")"
}

# ---------------------------------------------------------------------------
# helm: go install works (no replace directives in helm's go.mod).  Mirror the
# Makefile ldflags, in particular the k8s version used for
# .Capabilities.KubeVersion in `helm template` (otherwise it is v1.20.0!).
# ---------------------------------------------------------------------------
build_helm() {
  local work="$1" start=$SECONDS modfile cg cg_minor
  log "helm: go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  modfile="$(cd "$work" && go list -m -f '{{.GoMod}}' "helm.sh/helm/v3@$HELM_VERSION")"
  cg="$(awk '$1 == "k8s.io/client-go" {print $2; exit}' "$modfile")"   # e.g. v0.37.0
  cg_minor="${cg#v0.}"; cg_minor="${cg_minor%%.*}"
  [[ "$cg_minor" =~ ^[0-9]+$ ]] || die "cannot derive k8s minor from helm's client-go '$cg'"
  local ldflags="-s -w"
  ldflags+=" -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitCommit=module-$HELM_VERSION"
  local p
  for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$cg_minor"
  done
  mkdir -p "$work/gobin-helm"
  GOBIN="$work/gobin-helm" go install -p "$JOBS" -trimpath -ldflags="$ldflags" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  install_bin "$work/gobin-helm/helm" helm "$HELM_VERSION"
  log "helm: built in $(elapsed "$start") (default KubeVersion v1.$cg_minor.0)"
}

build_kubeconform() {
  local work="$1" start=$SECONDS
  log "kubeconform: go install github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
  mkdir -p "$work/gobin-kubeconform"
  GOBIN="$work/gobin-kubeconform" go install -p "$JOBS" -trimpath \
    -ldflags="-s -w -X main.version=$KUBECONFORM_VERSION" \
    "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
  install_bin "$work/gobin-kubeconform/kubeconform" kubeconform "$KUBECONFORM_VERSION"
  log "kubeconform: built in $(elapsed "$start")"
}

# ---------------------------------------------------------------------------
build_missing() {
  local -a todo=("$@")
  mkdir -p "$BIN_DIR"

  # Serialise concurrent invocations (parallel test runners etc.).
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$VERSION_DIR/.lock"
    if ! flock -n 9; then
      log "another k8s-tools.sh build holds $VERSION_DIR/.lock; waiting..."
      flock 9
    fi
    # Someone else may have finished the job while we waited.
    mapfile -t todo < <(for t in "${todo[@]}"; do is_fresh "$t" || echo "$t"; done)
    (( ${#todo[@]} )) || return 0
  fi

  setup_go_env
  local work total=$SECONDS
  # Work dir inside the cache root: same filesystem as BIN_DIR (atomic mv),
  # never inside the repository.
  work="$(mktemp -d "$CACHE_ROOT/.build.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  mkdir -p "$work/out"
  log "building: ${todo[*]} -> $BIN_DIR"

  local kube_targets=() t
  for t in "${todo[@]}"; do
    case "$t" in kube-apiserver|kubectl) kube_targets+=("$t") ;; esac
  done
  # cheap ones first so a broken proxy shows up fast
  for t in "${todo[@]}"; do [[ "$t" == kubeconform ]] && build_kubeconform "$work"; done
  for t in "${todo[@]}"; do [[ "$t" == helm ]] && build_helm "$work"; done
  for t in "${todo[@]}"; do [[ "$t" == etcd ]] && build_etcd "$work"; done
  (( ${#kube_targets[@]} == 0 )) || build_kube "$work" "${kube_targets[@]}"

  cat >"$VERSION_DIR/VERSIONS" <<EOF
kube-apiserver $KUBE_VERSION
kubectl $KUBE_VERSION
etcd $ETCD_VERSION
helm $HELM_VERSION
kubeconform $KUBECONFORM_VERSION
EOF
  log "all done in $(elapsed "$total")"
}

main() {
  local cmd="${1:-build}"
  case "$cmd" in
    -h|--help|help) usage; return 0 ;;
    versions)
      printf 'kubernetes %s\netcd %s\nhelm %s\nkubeconform %s\n' \
        "$KUBE_VERSION" "$ETCD_VERSION" "$HELM_VERSION" "$KUBECONFORM_VERSION"
      return 0 ;;
    rebuild)
      mkdir -p "$BIN_DIR"
      rm -f "$BIN_DIR"/.*.version
      cmd=build ;;
    build|path|env) ;;
    *) usage; die "unknown command: $cmd" ;;
  esac

  mkdir -p "$CACHE_ROOT"
  local -a todo
  mapfile -t todo < <(missing_tools)
  if (( ${#todo[@]} )); then
    build_missing "${todo[@]}"
  else
    log "cached: $BIN_DIR"
  fi
  print_result "$cmd"
}

main "$@"
