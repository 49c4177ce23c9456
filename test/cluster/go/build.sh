#!/usr/bin/env bash
# Build the test cluster's binaries from the Go module proxy into a cache outside the repo, keyed by version:
#   kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl (Kubernetes from go/kube/go.mod),
#   etcd (go/etcd/go.mod) and helm; and compat/<version>/kube-apiserver, the oldest API server whose CRD support
#   Strongroom promises (go/kube-1.30/go.mod), for the CRD compatibility test.
# Prints the bin dir as the last line of stdout. A second run with the same inputs costs nothing.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HELM_VERSION="${STRONGROOM_HELM_VERSION:-v3.21.4}"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly
command -v go >/dev/null || { echo "build.sh: go is not on PATH (Go 1.25+ is needed to build the test cluster)" >&2; exit 1; }
K8S_VERSION="$(cd "$HERE/kube" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
ETCD_VERSION="$(cd "$HERE/etcd" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
COMPAT_VERSION="$(cd "$HERE/kube-1.30" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
minor="$(cut -d. -f2 <<<"$K8S_VERSION")"
key="$( { go env GOVERSION; echo "$K8S_VERSION $ETCD_VERSION $HELM_VERSION"; cat "$HERE"/kube/go.sum "$HERE"/etcd/go.sum "$HERE"/kube-1.30/go.sum "${BASH_SOURCE[0]}"; } | sha256sum | cut -c1-12)"
CACHE_ROOT="${STRONGROOM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/strongroom}/cluster-bin"
BIN="$CACHE_ROOT/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION-$key"
mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.lock"; flock 9
ALL=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl etcd helm "compat/$COMPAT_VERSION/kube-apiserver")
have_all() { for b in "${ALL[@]}"; do [[ -x "$BIN/$b" ]] || return 1; done; }
if have_all; then echo "cluster binaries: cached in $BIN" >&2; echo "$BIN"; exit 0; fi
TMP="$BIN.tmp.$$"; rm -rf "$TMP"; mkdir -p "$TMP"; trap 'rm -rf "$TMP"' EXIT
start=$SECONDS
step() { local s=$SECONDS what=$1; shift; echo ">> $what" >&2; "$@" >&2; echo "   $what: $(( SECONDS - s ))s" >&2; }
# Stamp the version as hack/lib/version.sh does; otherwise /version says v0.0.0-master and helm's checks break.
stamp() {
  local v=$1 out="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    out+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$(cut -d. -f2 <<<"$v") -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$out"
}
kld="$(stamp "$K8S_VERSION")"
kbuild() { (cd "$HERE/kube" && go build -trimpath -pgo=off -ldflags "$kld" -o "$TMP/" "$@"); }
step "kube-apiserver kubectl $K8S_VERSION" kbuild k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
step "kubelet" kbuild k8s.io/kubernetes/cmd/kubelet
step "kube-controller-manager kube-scheduler" kbuild k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler
step "etcd $ETCD_VERSION" bash -c "cd '$HERE/etcd' && go build -trimpath -pgo=off -ldflags '-s -w' -o '$TMP/etcd' go.etcd.io/etcd/server/v3"
hld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for p in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do hld+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$minor"; done
step "helm $HELM_VERSION" bash -c "cd '$TMP' && GOFLAGS= GOBIN='$TMP' go install -trimpath -pgo=off -ldflags '$hld' 'helm.sh/helm/v3/cmd/helm@$HELM_VERSION'"
mkdir -p "$TMP/compat/$COMPAT_VERSION"
step "kube-apiserver $COMPAT_VERSION (CRD compatibility)" bash -c "cd '$HERE/kube-1.30' && go build -trimpath -pgo=off -ldflags '$(stamp "$COMPAT_VERSION")' -o '$TMP/compat/$COMPAT_VERSION/' k8s.io/kubernetes/cmd/kube-apiserver"
"$TMP/kube-apiserver" --version >&2
"$TMP/compat/$COMPAT_VERSION/kube-apiserver" --version >&2
# sed reads to the end: `head -1` exits early, and under pipefail the SIGPIPE it gives etcd failed the whole build.
"$TMP/etcd" --version | sed -n 1p >&2
rm -rf "$BIN"; mv "$TMP" "$BIN"
echo "cluster binaries: cold build took $(( SECONDS - start ))s -> $BIN" >&2
echo "$BIN"
