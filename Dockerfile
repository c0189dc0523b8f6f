# Container image: the Kubernetes issue makes this the production image (distroless,
# non-root, digest-pinned). Until then, a working multi-stage build.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY bin ./bin
RUN npm ci --ignore-scripts && npx tsc -p tsconfig.build.json && npm prune --omit=dev --ignore-scripts

FROM node:24-bookworm-slim
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/bin ./bin
COPY package.json ./
USER 65532:65532
ENTRYPOINT ["node", "/app/bin/tollgate.js"]
CMD ["run", "--config", "/etc/tollgate/config.json"]
