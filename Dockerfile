# syntax=docker/dockerfile:1
# The Keybrake proxy image (multi-stage, pnpm, non-root, read-only root filesystem friendly).
#   docker build -t keybrake/proxy:0.1.0 .
# The chart (templates/kubernetes/keybrake) runs it with the same WORKDIR and command as below.
# Docker is not available where this repository is developed and tested, so this file has not
# been built there; see the README's "Deploying on Kubernetes" section.
ARG NODE_IMAGE=node:20.20.2-bookworm-slim

FROM ${NODE_IMAGE} AS build
# better-sqlite3 compiles from source when no prebuilt binary matches the platform.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
RUN npm install -g pnpm@10.34.9
WORKDIR /src
COPY . .
# Only the proxy's dependencies, the console's build tools (Vite, Preact: bundled into
# core-proxy/dist/console) and the root's (TypeScript), not the integrations'.
RUN pnpm install --frozen-lockfile --filter @keybrake/core-proxy --filter @keybrake/console --filter keybrake \
 && pnpm exec tsc -b core-proxy \
 && pnpm --filter @keybrake/console run build \
 && pnpm --filter @keybrake/core-proxy deploy --prod --legacy /out

FROM ${NODE_IMAGE}
ENV NODE_ENV=production \
    KEYBRAKE_HOST=0.0.0.0 \
    KEYBRAKE_PORT=8080 \
    KEYBRAKE_DATA_DIR=/var/lib/keybrake
WORKDIR /app
# Owned by root and not writable by the proxy's user: the code cannot be changed at run time.
COPY --from=build /out/ /app/
# The embedded store's data folder (unused with Redis): the only place the proxy writes.
RUN mkdir -p /var/lib/keybrake && chown 1000:1000 /var/lib/keybrake
VOLUME ["/var/lib/keybrake"]
# The node image's unprivileged user, numeric so that Kubernetes' runAsNonRoot can check it.
USER 1000:1000
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "dist/cli.js", "serve"]
