# syntax=docker/dockerfile:1
#
# pareco in a container. Build:   docker build -t pareco .
# Serve ./data over TLS with a kept self-signed certificate:
#   docker volume create pareco-state
#   docker run -d --name pareco -p 4650:4650 -e PARECO_TOKEN=... \
#     -v "$PWD/data:/data" -v pareco-state:/var/lib/pareco pareco
#   docker logs pareco        # shows "tls fingerprint sha256:..." for clients
# Any other subcommand works the same way: docker run --rm pareco --help

# Build with the Rust toolchain (the crate's rust-version; it has the C
# compiler that SQLite and ring need). The caches keep downloaded crates
# and compiled dependencies between builds.
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin pareco \
    && install -m 0755 target/release/pareco /usr/local/bin/pareco

# Run on slim Debian as an unprivileged user. ca-certificates: the system
# roots a client (send/recv) checks servers against without --ca-cert.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/pareco \
       --shell /usr/sbin/nologin pareco \
    && install -d -o pareco -g pareco -m 0700 /var/lib/pareco \
    && install -d -o pareco -g pareco -m 0755 /data
COPY --from=build /usr/local/bin/pareco /usr/local/bin/pareco
# The kept certificate (--tls-self-signed: $XDG_DATA_HOME/pareco/tls) and
# the digest cache live in the state volume, never in the served root.
ENV XDG_DATA_HOME=/var/lib XDG_CACHE_HOME=/var/lib/pareco/cache
USER pareco
WORKDIR /data
VOLUME ["/data", "/var/lib/pareco"]
EXPOSE 4650
ENTRYPOINT ["pareco"]
CMD ["listen", "--root", "/data", "--bind", "0.0.0.0:4650", "--tls-self-signed"]
