# syntax=docker/dockerfile:1
# canaryctl container image: a static binary (CGO off, -trimpath, version stamped) on distroless
# static, running as a non-root user. Build with `make image` (passes VERSION, COMMIT and DATE), or:
#   docker build --build-arg VERSION=v0.1.0 --build-arg COMMIT=$(git rev-parse HEAD) -t canaryctl .

ARG GO_VERSION=1.26

# Build on the builder's platform and cross-compile for the target (docker buildx --platform ...).
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=dev
ARG COMMIT=unknown
ARG DATE=unknown
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X github.com/canaryctl/canaryctl/cmd.version=${VERSION} -X github.com/canaryctl/canaryctl/cmd.commit=${COMMIT} -X github.com/canaryctl/canaryctl/cmd.buildDate=${DATE}" \
      -o /out/canaryctl ./cmd/canaryctl

# distroless static: CA certificates, tzdata and /etc/passwd with nonroot (65532); no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/canaryctl /usr/local/bin/canaryctl
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
# State (rollout records) goes here unless --state-dir says otherwise; mount a volume to keep it.
ENV CANARYCTL_STATE_DIR=/tmp/canaryctl
ENTRYPOINT ["/usr/local/bin/canaryctl"]
CMD ["--help"]
