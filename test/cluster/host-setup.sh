#!/usr/bin/env bash
# Prepares this machine for Strongroom's demo and tests, idempotently; a second run costs a second or two.
#   usage: host-setup.sh [--for demo|test]      (default: test)
#  1. the Debian packages the real test node needs (containerd, runc, CNI plugins, busybox for test images,
#     nftables for kube-proxy and the host guard, tcpdump for the leak test, ...);
#  2. the test cluster's binaries, built from the Go module proxy into a cache outside the repo, each part keyed on
#     its own (go/build.sh): `--for demo` builds what the demo runs (Kubernetes, kube-proxy, etcd, CoreDNS, helm 3),
#     `--for test` also helm 4, the old kube-apiserver of the CRD compatibility test and promtool, which checks the
#     chart's alerting rules (cold: about 7 minutes on 2 cores; cached: instant).
# Run as root (the node needs it: containerd, network namespaces, mounts, the pod bridge and its nft guard).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODE=test
while (($#)); do
  case "$1" in
    --for) MODE="${2:-}"; shift 2 ;;
    --for=*) MODE="${1#--for=}"; shift ;;
    *) echo "host-setup: unknown argument $1 (usage: host-setup.sh [--for demo|test])" >&2; exit 2 ;;
  esac
done
case "$MODE" in demo | test) ;; *) echo "host-setup: --for must be demo or test, not '$MODE'" >&2; exit 2 ;; esac
PACKAGES=(containerd runc containernetworking-plugins busybox-static iproute2 iptables nftables tcpdump tar openssl softhsm2 age)
if [[ "$(id -u)" != 0 ]]; then
  echo "host-setup: the test cluster runs containerd and a kubelet, which need root; run as root" >&2; exit 1
fi
missing=()
for p in "${PACKAGES[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
if (( ${#missing[@]} )); then
  echo "host-setup: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi
# Debian's containerd package starts a system containerd; the test node runs its own with private paths,
# and the system one is not needed.
if command -v systemctl >/dev/null && systemctl is-active --quiet containerd 2>/dev/null; then systemctl stop containerd || true; fi
if ! command -v go >/dev/null; then
  echo "host-setup: Go 1.26 or newer is needed to build the test cluster (Kubernetes from the Go module proxy); put 'go' on PATH" >&2
  exit 1
fi
bin="$("$HERE/go/build.sh" --for "$MODE" | tail -1)"
echo "host-setup: ready (cluster binaries in $bin)" >&2
