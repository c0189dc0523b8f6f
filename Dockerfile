# syntax=docker/dockerfile:1.7
#
# tollgate's production image: the sidecar, the gateway and the injector webhook are all this
# one image (`tollgate run`, `tollgate webhook`, ...).
#
#   docker build -t tollgate:dev .
#   docker run --rm --read-only tollgate:dev --help
#
# Three stages: `build` compiles TypeScript with the dev dependencies; `deps` installs the
# production dependencies alone from the same lockfile; `runtime` is distroless Node.js 24
# (no shell, no npm, no package manager) with only dist/, bin/ and the production node_modules.
# test/dockerfile-rules.test.ts checks the house rules by parsing this file.
#
# Pin the base images by digest in CI (FROM image:tag@sha256:...); the tags below are exact
# Node versions, never `latest`.

FROM node:24.21.0-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: no dependency runs code at install time. It also skips our own `prepare`
# (the sources are not here yet) and the `node` devDependency's download of a second Node.js
# binary (this image's Node 24 compiles).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# tsc through the image's node by path: node_modules/.bin/node (the `node` devDependency, left
# uninstalled by --ignore-scripts) must not shadow it, as it would inside `npm run`
RUN node node_modules/typescript/bin/tsc -p tsconfig.build.json

FROM node:24.21.0-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

FROM gcr.io/distroless/nodejs24-debian12:nonroot AS runtime
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY package.json ./
# distroless `nonroot`; numeric, so Kubernetes can check runAsNonRoot
USER 65532:65532
# 15443 mTLS listener, 15021 health, 8443 the injector webhook
EXPOSE 15443 15021 8443
STOPSIGNAL SIGTERM
# exec form: node is PID 1 and tollgate installs its own SIGTERM/SIGINT handlers (drain, exit 0);
# no shell in between to swallow signals. Kubernetes ignores HEALTHCHECK; it probes /readyz.
# --max-semi-space-size=4: V8's young generation otherwise grows to 32 MiB; capped at 4 MiB
# semi-spaces a sidecar's resident memory is ~16-28 MiB lower with no measurable cost per request
# (bench/README.md). The benchmarks start tollgate with the same flag.
ENTRYPOINT ["/nodejs/bin/node", "--max-semi-space-size=4", "/app/bin/tollgate.js"]
CMD ["run", "--config", "/etc/tollgate/config.json"]
