# syntax=docker/dockerfile:1.7
#
# tollgate's production image: the sidecar, the gateway and the injector webhook are all this
# one image (`tollgate run`, `tollgate webhook`, ...).
#
#   docker build -t tollgate:dev .
#   docker run --rm --read-only tollgate:dev --help
#
# Four stages: `build` compiles TypeScript with the dev dependencies; `deps` installs the
# production dependencies alone from the same lockfile; `jemalloc` takes Debian 12's jemalloc
# (the distroless base is Debian 12 and has no package manager); `runtime` is distroless Node.js
# 24 (no shell, no npm) with only dist/, bin/, the production node_modules and that library.
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

# bookworm is Debian 12, as the runtime; the library lands at one path whatever the architecture
FROM node:24.21.0-bookworm-slim AS jemalloc
RUN apt-get update \
 && apt-get install -y --no-install-recommends libjemalloc2 \
 && cp "/usr/lib/$(uname -m)-linux-gnu/libjemalloc.so.2" /libjemalloc.so.2

FROM gcr.io/distroless/nodejs24-debian12:nonroot AS runtime
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY package.json ./
COPY --from=jemalloc /libjemalloc.so.2 /usr/lib/libjemalloc.so.2
# jemalloc instead of glibc's malloc: Node 24's TLS server keeps ~5 KiB of every full mTLS handshake
# (an OpenSSL/Node leak a bare https server has too); glibc's heap fragments around what stays,
# jemalloc's less: after 60,000 handshakes RSS is 348 instead of 383 MiB, ~4 MiB more at start.
# Two arenas: a sidecar is one event loop (and a worker thread per extra core). The benchmarks
# run every Node process with the same (IMAGE_ALLOCATOR in bench/macro/targets.ts).
ENV LD_PRELOAD=/usr/lib/libjemalloc.so.2 MALLOC_CONF=narenas:2
# distroless `nonroot`; numeric, so Kubernetes can check runAsNonRoot
USER 65532:65532
# 15443 mTLS listener, 15021 health, 8443 the injector webhook
EXPOSE 15443 15021 8443
STOPSIGNAL SIGTERM
# exec form: node is PID 1 and tollgate installs its own SIGTERM/SIGINT handlers (drain, exit 0);
# no shell in between to swallow signals. Kubernetes ignores HEALTHCHECK; it probes /readyz.
# The flags of bin/tollgate.js's first line, which `npx tollgate` and `./bin/tollgate.js` run with
# (the Dockerfile test checks they agree; the benchmarks read them there): --max-semi-space-size=4
# caps V8's young generation, which otherwise grows to 64 MiB under load and stays.
ENTRYPOINT ["/nodejs/bin/node", "--max-semi-space-size=4", "/app/bin/tollgate.js"]
CMD ["run", "--config", "/etc/tollgate/config.json"]
