# syntax=docker/dockerfile:1
# coupon-service: Node 24 runs the TypeScript sources directly (type stripping), so the image
# needs production dependencies and src/ only; no build step.

FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# --omit=optional: the Node 24 binaries package.json lists for machines with an older Node; the
# image has its own.
RUN npm ci --omit=dev --omit=optional --no-audit --no-fund && npm cache clean --force

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
USER node
EXPOSE 8080
# Ready when Redis and MySQL answer; node is in the image, curl is not.
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=5 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
STOPSIGNAL SIGTERM
# Exec form: node is PID 1 and receives SIGTERM itself, and drains before exiting.
CMD ["node", "src/main.ts"]
