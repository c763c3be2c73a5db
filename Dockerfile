# product-photo-api — one image for local Docker and for AWS Lambda (container image + Lambda Web Adapter).
#   local:  docker build -t product-photo-api . && docker run --rm -p 8000:8000 --env-file .env product-photo-api
#   lambda: see the README, "Deploy to AWS" (build with --platform linux/amd64 --provenance=false, push to ECR)

# ---------------------------------------------------------------- build stage
FROM debian:bookworm AS build
WORKDIR /src
# Same targets as CI: `make deps-build` apt-installs only the build dependencies, `make` builds
# build/product-photo-api (web page and openapi.json are embedded into the binary) and build/kie-sim.
# .dockerignore keeps the context to Makefile, src/, include/, tools/, web/ and docs/openapi.json.
COPY . .
RUN apt-get update && apt-get install -y --no-install-recommends make \
 && make deps-build && make \
 && ./build/product-photo-api routes > /dev/null

# ---------------------------------------------------------------- runtime stage
FROM debian:bookworm-slim AS runtime
# Runtime libraries only. libvips42 is the image pipeline (it brings libheif1 with
# its HEVC and AV1 decoders for HEIC/AVIF uploads); the server blocks every libvips
# loader but JPEG, PNG, WEBP, HEIF and TIFF at start-up. libsqlite3-0 is the local
# task store (UPLOAD_DIR/tasks.db).

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libmicrohttpd12 libcurl4 libcjson1 libuuid1 libssl3 zlib1g ca-certificates \
      libvips42 libsqlite3-0 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin app \
 && mkdir -p /app/uploads \
 && chown app:app /app/uploads

# AWS Lambda Web Adapter: a Lambda extension that turns API Gateway events into HTTP requests to
# 127.0.0.1:$PORT. It is inert outside Lambda, so the same image runs locally.
# Pinned to release 1.1.0 (2026-07-09) by tag and by the digest of its multi-platform index, so a moved tag
# cannot change the image; to update, take the new release's index digest (`docker buildx imagetools inspect`).
COPY --from=public.ecr.aws/awsguru/aws-lambda-adapter:1.1.0@sha256:17cfd08eff1dfea3f6a9a1e9c65fdac80aa4919b6085e746615530f43f57d2f1 /lambda-adapter /opt/extensions/lambda-adapter

COPY --from=build /src/build/product-photo-api /usr/local/bin/product-photo-api

WORKDIR /app

# PORT is read by the server and, since AWS_LWA_PORT is unset, by the adapter too (its default would be 8080).
# UPLOAD_DIR is deliberately unset: ./uploads (= /app/uploads, the volume) locally, /tmp/uploads on Lambda
# (the server switches when AWS_LAMBDA_FUNCTION_NAME is set; /app is read-only there).
# HOST is not set either: the server's default is 0.0.0.0 and the adapter would read HOST too.
ENV PORT=8000 \
    AWS_LWA_READINESS_CHECK_PATH=/healthz \
    LOG_FORMAT=text

VOLUME ["/app/uploads"]
EXPOSE 8000
USER app

HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/product-photo-api", "healthcheck"]

# `docker run <image> routes` / `healthcheck` replace CMD; Lambda runs ENTRYPOINT + CMD as well.
ENTRYPOINT ["/usr/local/bin/product-photo-api"]
CMD ["serve"]
