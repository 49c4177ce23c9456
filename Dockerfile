# syntax=docker/dockerfile:1
#
# The Strongroom image: one image for the operator, the sidecar and the CLI (docs/images.md).
#
#   docker build -t strongroom:dev .
#   docker run --rm strongroom:dev /app/operator/main.ts --help
#
# Node 24 runs the .ts sources directly (type stripping): there is no compile step, except for the sidecar, which is
# bundled by esbuild into /app/dist/sidecar/ (one ESM file and its segment worker) so that it starts faster
# (test/cluster/sidecar-bundle.ts; SIDECAR_COMMAND in core/injection/contract.ts runs it). The runtime stage is FROM
# scratch and holds only Node, the shared libraries ldd lists for it and for the native addons, /etc/passwd and
# /etc/group with the user 65532 "nonroot", an empty /tmp, empty /proc, /sys and /dev (mount points) and the
# application at /app; there is no shell. The test harness builds the same layout without a daemon
# (test/cluster/app-image.ts); keep the two in step: test/image/dockerfile-layout.test.ts reads this file and fails
# when the two differ.

ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS build
# node-gyp compiles the pkcs11js addon at `npm ci` (docs/adr/0004-pkcs11-binding.md). The repository's .npmrc points
# node-gyp at Debian's Node headers in /usr; this image has its own in /usr/local, so .npmrc is not copied.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
ENV npm_config_nodedir=/usr/local
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# The runtime root filesystem, assembled in /rootfs.
RUN <<'EOF'
set -eu
rootfs=/rootfs node=/usr/local/bin/node modules=/app/node_modules
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc" "$rootfs/tmp" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev" \
  "$rootfs/home/nonroot" "$rootfs/app"
chmod 1777 "$rootfs/tmp"
cp "$node" "$rootfs/usr/local/bin/node"
cp -a "$modules" "$rootfs/app/node_modules"
# Only the packages: npm's hidden lock file and its .bin links (to scripts that need /usr/bin/env) stay behind.
rm -rf "$rootfs/app/node_modules/.package-lock.json"
find "$rootfs/app/node_modules" -depth -path '*/node_modules/.bin' -type d -exec rm -rf {} +
# Every shared library of node and of the native addons, and the dynamic loader, at the path ldd names.
: > /tmp/libs
for binary in "$node" $(find "$modules" -type f -name '*.node'); do
  ldd "$binary" > /tmp/ldd.out
  if grep -q 'not found' /tmp/ldd.out; then
    echo "$binary needs a library that is not installed:" >&2
    cat /tmp/ldd.out >&2
    exit 1
  fi
  awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' /tmp/ldd.out >> /tmp/libs
done
sort -u -o /tmp/libs /tmp/libs
while read -r lib; do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done < /tmp/libs
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
  > "$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$rootfs/etc/group"
EOF

# The sidecar bundle. `npm ci` with the devDependencies (esbuild) but without install scripts: nothing here needs the
# pkcs11js addon or the `node` package's binary. sidecar-bundle.ts checks that the bundle links neither the operator
# nor a native addon, and that proto/ (which the bundle reads at run time from /app/proto) is where it expects it.
FROM ${NODE_IMAGE} AS bundle
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY core/ core/
COPY sidecar/ sidecar/
COPY proto/ proto/
COPY test/cluster/sidecar-bundle.ts test/cluster/
RUN node test/cluster/sidecar-bundle.ts /src

FROM scratch
COPY --from=build /rootfs/ /
# The application; .dockerignore leaves out tests and test data.
COPY package.json /app/
COPY core/ /app/core/
COPY operator/ /app/operator/
COPY cli/ /app/cli/
COPY sidecar/ /app/sidecar/
COPY proto/ /app/proto/
COPY crds/ /app/crds/
COPY --from=bundle /src/dist/sidecar/ /app/dist/sidecar/
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER 65532:65532
WORKDIR /app
ENTRYPOINT ["/usr/local/bin/node"]
CMD ["/app/operator/main.ts"]
