# syntax=docker/dockerfile:1
# coupon-service: Node 24 runs the TypeScript sources directly (type stripping), so the image
# needs production dependencies and src/ only, plus the web console's bundle built by Vite in a
# stage of its own (its build tools never reach the image).

FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# --omit=optional: the Node 24 binaries package.json lists for machines with an older Node; the
# image has its own.
RUN npm ci --omit=dev --omit=optional --no-audit --no-fund && npm cache clean --force

# The console's build tools (Vite, React, ...) are dev dependencies: this stage only.
FROM node:24-bookworm-slim AS console
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=optional --no-audit --no-fund
COPY src/gen ./src/gen
COPY web ./web
RUN node web/build.ts --force

FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production
# The commit for coupon_build_info (the image has no .git):
# docker build --build-arg BUILD_COMMIT=$(git rev-parse HEAD) .
ARG BUILD_COMMIT=unknown
ENV BUILD_COMMIT=$BUILD_COMMIT
WORKDIR /app
COPY --from=deps --chown=node:node /app/node_modules ./node_modules
COPY --chown=node:node package.json ./
# src/ holds the code, the generated messages (src/gen) and the Lua scripts read at run time.
COPY --chown=node:node src ./src
# The console (CONSOLE=on, the default) served from web/dist on the service's port.
COPY --from=console --chown=node:node /app/web/dist ./web/dist
USER node
EXPOSE 8080
# Ready when Redis and MySQL answer; node is in the image, curl is not.
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=5 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
STOPSIGNAL SIGTERM
# Exec form: node is PID 1 and receives SIGTERM itself, and drains before exiting. The heap
# settings are `npm start`'s (README, Performance: Memory): a young generation of 2 x 16 MB and
# the old one grown 2 x what the last full collection kept.
CMD ["node", "--max-semi-space-size=16", "--heap-growing-percent=100", "src/main.ts"]
