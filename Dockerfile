# localdns container image: compiled on Debian 12, run on a trimmed Debian 12.
#
#   docker build -t localdns .                       (or: buildah bud -t localdns .)
#   docker build --build-arg BASE=my-mirror/debian:bookworm-slim -t localdns .
#
# Stages:
#   build     the build dependencies (scripts/install-deps.sh --build), a release build
#   runtime   the shared libraries localdns links (scripts/install-deps.sh --run),
#             iptables (legacy and nft), nftables, the configs under /etc/localdns
#   image     runtime + the binary from `build`: the default target, the image users get
#   prebuilt  runtime + a binary built outside (named build context `localdns-bin`,
#             a directory holding `localdns`), for CI, which has compiled it already:
#               buildah bud --target prebuilt --build-context localdns-bin=DIR .
# `image` and `prebuilt` differ only in where the binary comes from: both are
# the shared `runtime` stage plus one COPY.
#
# It runs as root in the container with only the capabilities the pod grants
# (NET_ADMIN, NET_BIND_SERVICE, NET_RAW), as node-local-dns does; README.md,
# "Container image", says how to run it as another user and what that breaks.
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh --build && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake --preset release && cmake --build --preset release -j "$(nproc)" \
    && strip build/release/localdns && install -D build/release/localdns /out/localdns

FROM ${BASE} AS runtime
COPY scripts/install-deps.sh /tmp/install-deps.sh
# One layer: no documentation, manual pages or translations from the packages
# installed here (copyright files stay), no recommends, no apt lists or cache.
RUN printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
      'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
      'path-exclude /usr/share/locale/*' 'path-exclude /usr/share/lintian/*' \
      > /etc/dpkg/dpkg.cfg.d/localdns-slim \
    && /tmp/install-deps.sh --run \
    && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/apt/* \
       /var/log/dpkg.log /tmp/install-deps.sh
COPY config/ /etc/localdns/
ENTRYPOINT ["/usr/local/bin/localdns"]

FROM runtime AS prebuilt
COPY --from=localdns-bin localdns /usr/local/bin/localdns

FROM runtime AS image
COPY --from=build /out/localdns /usr/local/bin/localdns
