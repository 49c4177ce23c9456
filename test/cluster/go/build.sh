#!/usr/bin/env bash
# Build the test cluster's binaries from the Go module proxy into a cache outside the repo.
#   usage: build.sh [--for demo|test]       (default: test)
# Each part is built and cached on its own, under a key of its own (the Go version, the part's version and module
# sums, and the text of its build function below), so that adding or changing one part never rebuilds the others:
#   kube        kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl (go/kube/go.mod)
#   kube-proxy  kube-proxy, same module and version (go/kube/go.mod)
#   etcd        etcd (go/etcd/go.mod)
#   coredns     coredns (the cluster's DNS, run as a pod)
#   helm3       helm (Helm 3)
#   helm4       helm4 (Helm 4; the chart is tested with both)
#   versitygw   versitygw (the Versity S3 gateway: the real S3-compatible server that S3 storage is tested against,
#               docs/adr/0011-s3-test-server.md)
#   compat      compat/<version>/kube-apiserver, the oldest API server whose CRD support Strongroom promises
#               (go/kube-1.30/go.mod), for the CRD compatibility test only
#   promtool    promtool (Prometheus's rule checker: `promtool check rules` and `promtool test rules` validate the
#               chart's alerting rules, test/chart/observability.test.ts)
# `--for demo` builds what a cluster with a node runs (kube, kube-proxy, etcd, coredns), versitygw and helm 3, which the demo
# puts on the PATH it prints; `--for test` adds helm4, compat and promtool. The parts are linked into one directory per mode,
# whose path is the last line of stdout. A second run with the same inputs costs nothing.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODE=test
while (($#)); do
  case "$1" in
    --for) MODE="${2:-}"; shift 2 ;;
    --for=*) MODE="${1#--for=}"; shift ;;
    *) echo "build.sh: unknown argument $1 (usage: build.sh [--for demo|test])" >&2; exit 2 ;;
  esac
done
case "$MODE" in
  demo) PARTS=(kube kube-proxy etcd coredns helm3 versitygw) ;;
  test) PARTS=(kube kube-proxy etcd coredns helm3 helm4 versitygw compat promtool) ;;
  *) echo "build.sh: --for must be demo or test, not '$MODE'" >&2; exit 2 ;;
esac
HELM3_VERSION="${STRONGROOM_HELM_VERSION:-v3.21.4}"
HELM4_VERSION="${STRONGROOM_HELM4_VERSION:-v4.3.2}"
COREDNS_VERSION="${STRONGROOM_COREDNS_VERSION:-v1.15.0}"
VERSITYGW_VERSION="${STRONGROOM_VERSITYGW_VERSION:-v1.8.0}"
# Prometheus v3.x.y is the Go module version v0.3xx.y (v0.316.0 is Prometheus 3.16.0).
PROMETHEUS_VERSION="${STRONGROOM_PROMETHEUS_VERSION:-v0.316.0}"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly
command -v go >/dev/null || { echo "build.sh: go is not on PATH (Go 1.26+ is needed to build the test cluster)" >&2; exit 1; }
K8S_VERSION="$(cd "$HERE/kube" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
ETCD_VERSION="$(cd "$HERE/etcd" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
COMPAT_VERSION="$(cd "$HERE/kube-1.30" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
GO_VERSION="$(go env GOVERSION)"
CACHE_ROOT="${STRONGROOM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/strongroom}/cluster-bin"
mkdir -p "$CACHE_ROOT/parts"
exec 9>"$CACHE_ROOT/.lock"; flock 9

# Stamp the version as hack/lib/version.sh does; otherwise /version says v0.0.0-master and helm's checks break.
stamp() {
  local v=$1 out="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    out+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$(cut -d. -f2 <<<"$v") -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$out"
}

# One function per part: build_<part> OUTDIR writes the part's files into OUTDIR.
build_kube() {
  (cd "$HERE/kube" && go build -trimpath -pgo=off -ldflags "$(stamp "$K8S_VERSION")" -o "$1/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler)
  "$1/kube-apiserver" --version
}
build_kube_proxy() {
  (cd "$HERE/kube" && go build -trimpath -pgo=off -ldflags "$(stamp "$K8S_VERSION")" -o "$1/" k8s.io/kubernetes/cmd/kube-proxy)
  "$1/kube-proxy" --version
}
build_etcd() {
  (cd "$HERE/etcd" && go build -trimpath -pgo=off -ldflags '-s -w' -o "$1/etcd" go.etcd.io/etcd/server/v3)
  # sed reads to the end: `head -1` exits early, and under pipefail the SIGPIPE it gives etcd failed the whole build.
  "$1/etcd" --version | sed -n 1p
}
build_coredns() {
  # CoreDNS's go.mod has no replace directives, so `go install pkg@version` builds it as released.
  (cd "$1" && GOFLAGS= GOBIN="$1" go install -trimpath -pgo=off \
    -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" \
    "github.com/coredns/coredns@$COREDNS_VERSION")
  "$1/coredns" -version
}
build_helm3() {
  local minor ld
  minor="$(cut -d. -f2 <<<"$K8S_VERSION")"
  ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM3_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for p in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do ld+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$minor"; done
  (cd "$1" && GOFLAGS= GOBIN="$1" go install -trimpath -pgo=off -ldflags "$ld" "helm.sh/helm/v3/cmd/helm@$HELM3_VERSION")
  "$1/helm" version --short
}
build_helm4() {
  # Helm 4 takes its default Kubernetes version from the client-go version in its build info (no ldflags for it).
  local ld="-s -w -X helm.sh/helm/v4/internal/version.version=$HELM4_VERSION -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
  mkdir -p "$1/gobin"
  (cd "$1" && GOFLAGS= GOBIN="$1/gobin" go install -trimpath -pgo=off -ldflags "$ld" "helm.sh/helm/v4/cmd/helm@$HELM4_VERSION")
  mv "$1/gobin/helm" "$1/helm4"; rmdir "$1/gobin"
  "$1/helm4" version --short
}
build_versitygw() {
  # Its go.mod has no replace directives either: `go install pkg@version` builds the release.
  (cd "$1" && GOFLAGS= GOBIN="$1" go install -trimpath -pgo=off -ldflags "-s -w" \
    "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION")
  "$1/versitygw" --version | sed -n 1p
}
build_promtool() {
  # Prometheus's go.mod has no replace directives: `go install pkg@version` builds the release. remove_all_sd leaves
  # out the service-discovery plugins (every cloud SDK), which the rule commands never use.
  local m="${PROMETHEUS_VERSION#v0.}" v
  v="3.$((10#${m%%.*} - 300)).${m#*.}"
  (cd "$1" && GOFLAGS= GOBIN="$1" go install -trimpath -pgo=off -tags remove_all_sd \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=$v -X github.com/prometheus/common/version.Branch=HEAD" \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION")
  "$1/promtool" --version | sed -n 1p
}
build_compat() {
  mkdir -p "$1/compat/$COMPAT_VERSION"
  (cd "$HERE/kube-1.30" && go build -trimpath -pgo=off -ldflags "$(stamp "$COMPAT_VERSION")" \
    -o "$1/compat/$COMPAT_VERSION/" k8s.io/kubernetes/cmd/kube-apiserver)
  "$1/compat/$COMPAT_VERSION/kube-apiserver" --version
}

# What each part provides (paths relative to the mode's bin directory), its version, and the inputs of its key.
files_of() {
  case "$1" in
    kube) echo kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl ;;
    kube-proxy) echo kube-proxy ;;
    etcd) echo etcd ;;
    coredns) echo coredns ;;
    helm3) echo helm ;;
    helm4) echo helm4 ;;
    versitygw) echo versitygw ;;
    compat) echo "compat/$COMPAT_VERSION/kube-apiserver" ;;
    promtool) echo promtool ;;
  esac
}
version_of() {
  case "$1" in
    kube | kube-proxy) echo "$K8S_VERSION" ;;
    etcd) echo "$ETCD_VERSION" ;;
    coredns) echo "$COREDNS_VERSION" ;;
    helm3) echo "$HELM3_VERSION" ;;
    helm4) echo "$HELM4_VERSION" ;;
    versitygw) echo "$VERSITYGW_VERSION" ;;
    compat) echo "$COMPAT_VERSION" ;;
    promtool) echo "$PROMETHEUS_VERSION" ;;
  esac
}
key_of() {
  local fn="build_${1//-/_}" sums=()
  case "$1" in
    kube | kube-proxy | helm3) sums=("$HERE/kube/go.sum") ;; # helm 3 is stamped with the Kubernetes minor
    etcd) sums=("$HERE/etcd/go.sum") ;;
    compat) sums=("$HERE/kube-1.30/go.sum") ;;
  esac
  { echo "$GO_VERSION $1 $(version_of "$1")"; declare -f stamp "$fn"; ((${#sums[@]})) && cat "${sums[@]}"; true; } |
    sha256sum | cut -c1-12
}

start=$SECONDS
links=()
for part in "${PARTS[@]}"; do
  dir="$CACHE_ROOT/parts/$part-$(version_of "$part")-$(key_of "$part")"
  have=1
  for f in $(files_of "$part"); do [[ -x "$dir/$f" ]] || have=0; done
  if ((have)); then
    echo "cluster binaries: $part cached in $dir" >&2
  else
    tmp="$dir.tmp.$$"; rm -rf "$tmp"; mkdir -p "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    s=$SECONDS
    echo ">> building $part $(version_of "$part")" >&2
    "build_${part//-/_}" "$tmp" >&2
    rm -rf "$dir"; mv "$tmp" "$dir"; trap - EXIT
    echo "   $part: $((SECONDS - s))s -> $dir" >&2
  fi
  for f in $(files_of "$part"); do links+=("$f=$dir/$f"); done
done

# The mode's bin directory: a symlink per file into the parts, named by the parts it links.
set_key="$(printf '%s\n' "${links[@]}" | sha256sum | cut -c1-12)"
BIN="$CACHE_ROOT/$MODE-k8s-$K8S_VERSION-$set_key"
if [[ ! -d "$BIN" ]]; then
  tmp="$BIN.tmp.$$"; rm -rf "$tmp"; trap 'rm -rf "$tmp"' EXIT
  for l in "${links[@]}"; do
    mkdir -p "$(dirname "$tmp/${l%%=*}")"
    ln -s "${l#*=}" "$tmp/${l%%=*}"
  done
  mv "$tmp" "$BIN"; trap - EXIT
fi
echo "cluster binaries ($MODE): ready in $((SECONDS - start))s -> $BIN" >&2
echo "$BIN"
