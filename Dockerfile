# Rohrpost production image.
#
#   docker build -t rohrpost .
#   docker run -p 3000-3002:3000-3002 -e ROHRPOST__WORKERS__COUNT=2 rohrpost
#
# Configuration: the image's /etc/rohrpost/rohrpost.toml (mount your own over it) and
# ROHRPOST__SECTION__KEY environment variables. The supervisor drains its workers on SIGTERM.

# --- build: the release binary -----------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
# Cargo.toml names the integration tests in test/; they must exist to build.
COPY test test
RUN cargo build --release --locked --bin rohrpost

# --- client: sockjs-client from npm (never committed) --------------------------------------------
FROM node:20-bookworm-slim AS client
WORKDIR /client
COPY test/browser/package.json test/browser/package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts

# --- run: a slim Debian with the binary, the config and the static files -------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /srv/rohrpost --create-home rohrpost
WORKDIR /srv/rohrpost
COPY --from=build /src/target/release/rohrpost /usr/local/bin/rohrpost
COPY config/rohrpost.toml /etc/rohrpost/rohrpost.toml
COPY static static
COPY --from=client /client/node_modules/sockjs-client/dist/sockjs.min.js static/js/sockjs.min.js
USER rohrpost
ENV ROHRPOST__HTTP__HOST=0.0.0.0 \
    RUST_LOG=info
# Main port, then one port per worker (workers.count, default: one per CPU).
EXPOSE 3000 3001 3002 3003 3004
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
  CMD curl -fsS http://127.0.0.1:3000/health >/dev/null || exit 1
STOPSIGNAL SIGTERM
CMD ["rohrpost"]
