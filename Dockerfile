# The smart-authz image: the release binary, built profile-guided, on a distroless base,
# nothing else.
#   docker build -t registry.example.org/smart-authz:0.1.0 .                  (about 20 min on 2 cores)
#   docker build --build-arg PGO=0 -t registry.example.org/smart-authz:0.1.0 .  (plain release build)
# Non-root (uid 65532), no shell, no package manager; runs read-only (the Helm chart sets
# readOnlyRootFilesystem). The protobuf compiler is vendored by the build, and aws-lc builds
# with the toolchain's C compiler.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# llvm-profdata for the toolchain's own LLVM, which merges the profile below.
RUN rustup component add llvm-tools
COPY . .
# Profile-guided (scripts/pgo-build.sh): an instrumented build serves the load generator's
# scenarios on loopback, then the release build is laid out by what it counted; about a
# third less CPU per call (docs/performance-log.md, "The profile-guided build"). It takes about
# three times as long: `--build-arg PGO=0` builds the plain release binary.
ARG PGO=1
RUN if [ "$PGO" = 1 ]; then \
      scripts/pgo-build.sh /out/smart-authz; \
    else \
      cargo build --release --locked --bin smart-authz \
      && install -D -m 0755 target/release/smart-authz /out/smart-authz; \
    fi

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/smart-authz /usr/local/bin/smart-authz
USER 65532:65532
# gRPC (API, ext_authz, health, reflection), plaintext health for probes, Prometheus.
EXPOSE 50051 8081 9464
ENTRYPOINT ["/usr/local/bin/smart-authz"]
# Without --config the built-in development configuration runs, on loopback only: give the
# image a configuration (the chart mounts one).
CMD ["serve"]
