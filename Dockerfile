# syntax=docker/dockerfile:1.7
#
# CPU images of ScanFleet, one builder stage, two final targets:
#   docker build --target dispatcher -t scanfleet/dispatcher:dev .
#   docker build --target cpu-worker -t scanfleet/cpu-worker:dev .
# The GPU worker has its own file (Dockerfile.gpu: CUDA runtime base, --features cuda).
# Runtime libraries match the builder's distribution (Debian bookworm: OpenCV 4.6, *406 packages).

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS builder
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libopencv-dev clang libclang-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# SQLX_OFFLINE: the query macros use the committed .sqlx/ data, no database at build time.
ENV SQLX_OFFLINE=true
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins \
 && mkdir -p /out \
 && cp target/release/dispatcher target/release/worker /out/

# Shared runtime layer: OpenCV runtime libraries, CA roots, curl for HEALTHCHECK,
# an unprivileged user (uid 10001) and the local blob directory it owns (a named
# volume mounted there in docker-compose starts with this ownership).
FROM ${RUNTIME_IMAGE} AS runtime
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates curl \
      libopencv-core406 libopencv-imgproc406 libopencv-videoio406 \
      libopencv-imgcodecs406 libopencv-video406 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 scanfleet \
 && useradd --system --uid 10001 --gid scanfleet --home-dir /var/lib/scanfleet --shell /usr/sbin/nologin scanfleet \
 && mkdir -p /var/lib/scanfleet/blobs \
 && chown -R scanfleet:scanfleet /var/lib/scanfleet
ENV LOG_FORMAT=json \
    RUST_LOG=info \
    BLOB_STORE=/var/lib/scanfleet/blobs
WORKDIR /var/lib/scanfleet

FROM runtime AS dispatcher
COPY --from=builder /out/dispatcher /usr/local/bin/dispatcher
ENV LISTEN_ADDR=0.0.0.0:8080
EXPOSE 8080
USER 10001:10001
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/dispatcher"]
CMD ["serve"]

FROM runtime AS cpu-worker
COPY --from=builder /out/worker /usr/local/bin/worker
ENV QUEUE=cpu \
    BACKEND=cpu \
    METRICS_ADDR=0.0.0.0:9091
EXPOSE 9091
USER 10001:10001
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:9091/healthz"]
ENTRYPOINT ["/usr/local/bin/worker"]
CMD ["serve"]
