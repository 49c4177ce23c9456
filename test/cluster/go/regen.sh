#!/usr/bin/env bash
# Regenerate the wrapper modules that pin the Kubernetes and etcd sources built by build.sh.
# Run once per version bump (needs the Go module proxy), then commit go.mod and go.sum. CI never runs this.
# usage: test/cluster/go/regen.sh v1.35.4 v3.6.16
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
K8S="${1:?usage: regen.sh <k8s version> <etcd version>}"; ETCD="${2:?etcd version}"
STAGING_VERSION="v0.${K8S#v1.}"
export GOTOOLCHAIN=local
scratch="$(mktemp -d)"; trap 'rm -rf "$scratch"' EXIT
# k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with ./staging; replace only works
# in the main module, so every staging replace has to be restated here with the published staging version.
upstream_gomod="$(cd "$scratch" && go mod download -json "k8s.io/kubernetes@$K8S" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
mapfile -t staging < <(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\)[[:space:]]*=>[[:space:]]*\./staging/src/.*#\1#p' "$upstream_gomod" | sort -u)
gover="$(sed -n 's/^go \([0-9][0-9.]*\)[[:space:]]*$/\1/p' "$upstream_gomod")"
echo "kubernetes $K8S: go $gover, ${#staging[@]} staging modules at $STAGING_VERSION" >&2
cd "$HERE/kube"
printf 'module strongroom.dev/test/cluster/kube\n\ngo %s\n' "$gover" > go.mod
go mod edit -require="k8s.io/kubernetes@$K8S"
for m in "${staging[@]}"; do go mod edit -replace="$m=$m@$STAGING_VERSION"; done
rm -f go.sum; go mod tidy
cd "$HERE/etcd"
printf 'module strongroom.dev/test/cluster/etcd\n\ngo 1.25.0\n' > go.mod
go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD"
rm -f go.sum; go mod tidy
