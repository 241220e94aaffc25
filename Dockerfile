# syntax=docker/dockerfile:1
#
# pullprobe container image: a static (musl) binary on distroless/static, running as nonroot.
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" -t pullprobe .
# Builds for the platform it runs on (docker buildx build --platform linux/amd64,linux/arm64
# builds each under emulation). See docs/deploy.md for the image size.

FROM rust:1-bookworm AS build
# ring (rustls' crypto) compiles C and assembly: musl-gcc for the static target.
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# REVISION reaches pullprobe_build_info through build.rs (PULLPROBE_REVISION): .git is not in the context.
ARG VERSION=dev
ARG REVISION=unknown
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(uname -m)-unknown-linux-musl" \
    && rustup target add "$target" \
    && PULLPROBE_REVISION="$REVISION" TARGET_CC=musl-gcc cargo build --release --locked --target "$target" \
    && cp "target/$target/release/pullprobe" /pullprobe

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="pullprobe" \
      org.opencontainers.image.description="Probes the container image-pull path (DNS, TCP, TLS, registry auth, manifest) from every node and exports Prometheus metrics." \
      org.opencontainers.image.source="https://github.com/pullprobe/pullprobe" \
      org.opencontainers.image.documentation="https://github.com/pullprobe/pullprobe/blob/main/docs/deploy.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /pullprobe /pullprobe
# distroless' nonroot user, numeric so that Kubernetes can verify runAsNonRoot.
USER 65532:65532
EXPOSE 9865
# No CMD: the agent runs on its embedded default config; deploy/ passes --config.file.
ENTRYPOINT ["/pullprobe"]
