# localdns container image: build on Debian 12, run on a slim Debian 12.
FROM debian:12 AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake --preset release && cmake --build --preset release \
    && strip build/release/localdns

FROM debian:12-slim
COPY scripts/install-deps.sh /tmp/install-deps.sh
RUN /tmp/install-deps.sh --run && rm -rf /var/lib/apt/lists/* /tmp/install-deps.sh
COPY --from=build /src/build/release/localdns /usr/local/bin/localdns
COPY config/ /etc/localdns/
# Node setup (--local-ip) needs root or CAP_NET_ADMIN and hostNetwork; the
# standalone default does not.
USER 65532:65532
EXPOSE 5353/udp 5353/tcp
ENTRYPOINT ["/usr/local/bin/localdns"]
