# syntax=docker/dockerfile:1
# shipd as a small static image: built for musl (libgit2 and OpenSSL vendored and linked in),
# run from scratch as a non-root user, on a read-only root filesystem (the chart mounts
# /var/lib/ship and /tmp as emptyDirs). Time zones are compiled into the binary (jiff).
#
#   docker build -t ghcr.io/ship-rs/shipd:0.1.0 .

FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools perl make \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target x86_64-unknown-linux-musl -p shipd --features static \
    && install -D target/x86_64-unknown-linux-musl/release/shipd /out/shipd \
    && mkdir -p /out/var/lib/ship /out/tmp

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build --chown=65532:65532 /out/ /
USER 65532:65532
ENTRYPOINT ["/shipd"]
