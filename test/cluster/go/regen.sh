#!/usr/bin/env bash
# Regenerate a wrapper module that pins sources built by build.sh. Run once per version bump (needs the Go module
# proxy), then commit go.mod and go.sum. CI never runs this.
#   test/cluster/go/regen.sh kube v1.35.4          Kubernetes commands of the test cluster
#   test/cluster/go/regen.sh etcd v3.6.16          etcd
#   test/cluster/go/regen.sh kube-1.30 v1.30.14    the oldest supported API server, for CRD compatibility tests
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${1:?usage: regen.sh <module dir> <version>}"; VERSION="${2:?version}"
export GOTOOLCHAIN=local
cd "$HERE/$DIR"
[[ -f tools.go ]] || { echo "regen.sh: $HERE/$DIR/tools.go names the commands to pin; write it first" >&2; exit 1; }
case "$DIR" in
  kube*)
    scratch="$(mktemp -d)"; trap 'rm -rf "$scratch"' EXIT
    # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with ./staging; replace only works
    # in the main module, so every staging replace is restated here with the published staging version.
    upstream="$(cd "$scratch" && go mod download -json "k8s.io/kubernetes@$VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
    mapfile -t staging < <(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\)[[:space:]]*=>[[:space:]]*\./staging/src/.*#\1#p' "$upstream" | sort -u)
    gover="$(sed -n 's/^go \([0-9][0-9.]*\)[[:space:]]*$/\1/p' "$upstream")"
    echo "kubernetes $VERSION: go $gover, ${#staging[@]} staging modules at v0.${VERSION#v1.}" >&2
    printf 'module strongroom.dev/test/cluster/%s\n\ngo %s\n' "$DIR" "$gover" > go.mod
    go mod edit -require="k8s.io/kubernetes@$VERSION"
    for m in "${staging[@]}"; do go mod edit -replace="$m=$m@v0.${VERSION#v1.}"; done ;;
  etcd*)
    printf 'module strongroom.dev/test/cluster/%s\n\ngo 1.25.0\n' "$DIR" > go.mod
    go mod edit -require="go.etcd.io/etcd/server/v3@$VERSION" ;;
  *) echo "regen.sh: unknown module dir $DIR" >&2; exit 1 ;;
esac
rm -f go.sum; go mod tidy
