# syntax=docker/dockerfile:1
#
# One Dockerfile for every Snowflake role. Each final stage is a target:
#
#   docker build --target proxy  -t snowflake-proxy  .
#   docker build --target broker -t snowflake-broker .
#   docker build --target bridge -t snowflake-bridge .   (tor + snowflake-server)
#   docker build --target server -t snowflake-server .   (standalone server)
#   docker build --target client -t snowflake-client .
#   docker build --target probetest -t probetest .
#
# Binaries are static (CGO_ENABLED=0) and every image runs as a non-root
# user. internal/opscheck checks that each ENTRYPOINT names a binary this
# repository builds and that every flag used here exists.

ARG GO_VERSION=1.26
ARG DEBIAN_RELEASE=bookworm

FROM golang:${GO_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
# Modules first, so that source edits do not invalidate the download layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=docker
RUN set -eu; mkdir -p /out; \
    for m in snowflake-server:server snowflake-broker:broker snowflake-proxy:proxy \
             snowflake-client:client probetest:probetest; do \
        name=${m%%:*}; pkg=${m#*:}; \
        [ -f "$pkg/main.go" ] || continue; \
        CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$VERSION" -o "/out/$name" "./$pkg"; \
    done

# Tor's geoip databases, for the broker's and proxy's country statistics.
FROM debian:${DEBIAN_RELEASE}-slim AS geoip
RUN apt-get update && apt-get install -y --no-install-recommends tor-geoipdb ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# Minimal runtime: busybox provides wget and grep for health checks; the Go
# binaries need nothing else but CA certificates.
FROM busybox:1.36-musl AS runtime
COPY --from=geoip /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# 65532 is the conventional unprivileged "nonroot" id; no shell login.
RUN echo 'snowflake:x:65532:65532:snowflake:/var/lib/snowflake:/bin/false' >>/etc/passwd \
    && echo 'snowflake:x:65532:' >>/etc/group \
    && mkdir -p /var/lib/snowflake && chown 65532:65532 /var/lib/snowflake
WORKDIR /var/lib/snowflake
USER 65532:65532

FROM runtime AS proxy
COPY --from=geoip /usr/share/tor/geoip /usr/share/tor/geoip6 /usr/share/tor/
COPY --from=build /out/snowflake-proxy /usr/local/bin/snowflake-proxy
ENTRYPOINT ["/usr/local/bin/snowflake-proxy"]
# Metrics and status page on loopback: with --network host (recommended),
# 0.0.0.0 would publish them on every host interface.
CMD ["-metrics", "-metrics-address", "127.0.0.1", "-summary-interval", "1h"]

FROM runtime AS broker
COPY --from=geoip /usr/share/tor/geoip /usr/share/tor/geoip6 /usr/share/tor/
COPY --from=build /out/snowflake-broker /usr/local/bin/snowflake-broker
VOLUME ["/var/lib/snowflake"]
EXPOSE 443 80
ENTRYPOINT ["/usr/local/bin/snowflake-broker"]
CMD ["-acme-cert-cache", "/var/lib/snowflake/acme-cert-cache", "-metrics-log", "/var/lib/snowflake/metrics.log"]

FROM runtime AS server
COPY --from=build /out/snowflake-server /usr/local/bin/snowflake-server
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/snowflake-server"]
CMD ["-listen", "0.0.0.0:8080", "-orport", "tor:9001", "-disable-tls"]

FROM runtime AS client
COPY --from=build /out/snowflake-client /usr/local/bin/snowflake-client
ENTRYPOINT ["/usr/local/bin/snowflake-client"]

# The NAT probe service; deploy it behind a symmetric NAT (doc/protocol.md).
FROM runtime AS probetest
COPY --from=build /out/probetest /usr/local/bin/probetest
VOLUME ["/var/lib/snowflake"]
# 80 answers the ACME HTTP-01 challenge when -acme-hostnames is given.
EXPOSE 8443 80
ENTRYPOINT ["/usr/local/bin/probetest"]
CMD ["-acme-cert-cache", "/var/lib/snowflake/acme-cert-cache"]

# The bridge: tor as a bridge relay that runs snowflake-server as its managed
# transport (wire-protocol §5.6). tor runs as debian-tor, never root.
FROM debian:${DEBIAN_RELEASE}-slim AS bridge
RUN apt-get update && apt-get install -y --no-install-recommends tor tor-geoipdb ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/snowflake-server /usr/local/bin/snowflake-server
COPY doc/examples/torrc-bridge /etc/tor/torrc
RUN mkdir -p /var/lib/tor && chown -R debian-tor:debian-tor /var/lib/tor && chmod 700 /var/lib/tor
VOLUME ["/var/lib/tor"]
EXPOSE 443 80
USER debian-tor
ENTRYPOINT ["tor", "-f", "/etc/tor/torrc"]
