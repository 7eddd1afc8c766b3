# The rodent image: one static binary in an empty (scratch) image, run as a numeric non-root user.
# rodent is its own init (it supervises as PID 1): no tini, no `--init`, no shell.
#
# Build from source (needs the official Rust image):
#     docker build -t rodent .
#
# Build the same image from a binary compiled outside Docker (CI, or a machine that cannot pull
# the Rust image). The binary must be static glibc (or musl), built like this (on x86_64):
#     RUSTFLAGS="-C target-feature=+crt-static" \
#         cargo build --release --locked --target x86_64-unknown-linux-gnu
#     docker build --build-arg BINARY=prebuilt -t rodent .
# RODENT_BINARY names another path inside the build context:
#     docker build --build-arg BINARY=prebuilt --build-arg RODENT_BINARY=path/to/rodent -t rodent .
# Both ways end in the very same final stage; only the stage the binary comes from differs.
# Building needs BuildKit (the default builder of current Docker; `docker buildx build` on older
# engines), which builds only the stages the final one needs: with BINARY=prebuilt nothing is
# pulled at all.

# Which stage provides /rodent: `source` (compile here) or `prebuilt` (copy from the context).
ARG BINARY=source

# --- the binary, compiled from source ------------------------------------------------------------
FROM rust:1-bookworm AS source
WORKDIR /src
COPY . .
# What `rodent version` and /version report as the commit (there is no .git in the context).
ARG RODENT_BUILD_COMMIT=unknown
# +crt-static links glibc statically: the binary runs in an empty image, and glibc's built-in
# DNS resolver (driven by the /etc/resolv.conf and /etc/hosts that Docker provides) still
# resolves service names such as an OpenTelemetry collector's.
# The cache mounts keep downloaded crates and compiled dependencies between builds, so that
# `docker compose up` after an edit recompiles only what changed.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    target="$(rustc -vV | sed -n 's/^host: //p')" \
    && RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --locked --target "$target" \
    && cp "target/$target/release/rodent" /rodent \
    && mkdir /empty

# --- the binary, compiled outside Docker ---------------------------------------------------------
FROM scratch AS prebuilt
ARG RODENT_BINARY=target/x86_64-unknown-linux-gnu/release/rodent
COPY ${RODENT_BINARY} /rodent
# Both binary stages provide /rodent and an empty directory /empty for the final stage's /run.
WORKDIR /empty

FROM ${BINARY} AS binary

# --- the image -----------------------------------------------------------------------------------
FROM scratch
# Keep in step with Cargo.toml's version (the container tests check it).
ARG RODENT_VERSION=0.1.0
LABEL org.opencontainers.image.title="rodent" \
      org.opencontainers.image.description="An HTTP service whose process lifecycle is right: honest probes, a drain that drops nothing, safe as PID 1." \
      org.opencontainers.image.source="https://github.com/rodent-rs/rodent" \
      org.opencontainers.image.version="${RODENT_VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=binary /rodent /rodent
# No PID file by default: in a container rodent is PID 1, and `rodent status`, `reload` and
# `stop` run inside it (`docker exec`, `kubectl exec`) find it there without one. So the image
# starts with a read-only root filesystem, under any UID, with no volume.
# /run/rodent is for a PID file configured explicitly (RODENT_PID_FILE=/run/rodent/rodent.pid),
# writable by the service user; with a read-only root filesystem or another UID, mount a tmpfs
# there for that UID, as compose.yaml does. /run itself stays root's. COPY --chown gives every
# directory it creates to that user, hence /run first.
COPY --from=binary /empty /run
COPY --from=binary --chown=65532:65532 /empty /run/rodent

# Defaults sized for `docker stop`, which sends SIGKILL 10 s after SIGTERM: the whole shutdown
# fits in RODENT_SHUTDOWN_GRACE, and RODENT_DRAIN_DELAY + RODENT_REQUEST_TIMEOUT fit in it with
# the safety margin. Under Kubernetes set RODENT_SHUTDOWN_GRACE to terminationGracePeriodSeconds
# (and raise the others to taste); under Compose, to stop_grace_period.
ENV RODENT_HOST=0.0.0.0 \
    RODENT_PORT=8080 \
    RODENT_PID_FILE= \
    RODENT_SHUTDOWN_GRACE=10s \
    RODENT_DRAIN_DELAY=2s \
    RODENT_REQUEST_TIMEOUT=5s

# Numeric, so that Kubernetes' runAsNonRoot can verify it without an /etc/passwd.
USER 65532:65532
EXPOSE 8080
# rodent drains on SIGTERM (and on SIGINT); SIGTERM is Docker's default, stated for clarity.
STOPSIGNAL SIGTERM
# Readiness: healthy means "send me traffic" (what `docker compose up --wait` and
# `depends_on: condition: service_healthy` wait for). While draining it turns unhealthy on purpose.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/rodent", "probe", "ready"]
ENTRYPOINT ["/rodent"]
