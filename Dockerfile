# syntax=docker/dockerfile:1
# Build stage: compile TypeScript and generate the demo device snapshot.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json ./
COPY src ./src
COPY proto ./proto
COPY data ./data
RUN npm run build && node dist/tools/demo-data.js --if-missing && npm prune --omit=dev

# Runtime stage: production dependencies, compiled code, data; runs as an unprivileged user.
FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build --chown=node:node /app/package.json ./
COPY --from=build --chown=node:node /app/node_modules ./node_modules
COPY --from=build --chown=node:node /app/dist ./dist
COPY --from=build --chown=node:node /app/proto ./proto
COPY --from=build --chown=node:node /app/data ./data
USER node
# Media traffic on 8080; admin (metrics, readiness) on 8081, which must listen beyond loopback inside a container,
# so the engine requires RTA_ADMIN_TOKEN (docker run -e RTA_ADMIN_TOKEN=...) and every admin route asks for it.
ENV PORT=8080 ADMIN_PORT=8081 ADMIN_HOST=0.0.0.0
EXPOSE 8080 8081
HEALTHCHECK --interval=10s --timeout=2s --start-period=30s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:8081/readyz',{headers:{authorization:'Bearer '+process.env.RTA_ADMIN_TOKEN}}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
STOPSIGNAL SIGTERM
CMD ["node", "dist/server/main.js"]
