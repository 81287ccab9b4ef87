# xgsim image: one image for every role of the scale-out (campaign
# orchestrator, host workers, or any other `xgsim` command).
#
#   docker build -t xgsim:local .
#   docker run --rm xgsim:local scenario examples/scenarios/map-ram-roundtrip.yaml
#
# docker-compose.yml builds it as xgsim:local; tests/compose.test.ts checks
# this file offline (stages, users, and that everything COPY names exists).

# ---- build: the dev toolchain compiles TypeScript to dist/ ----------------
FROM node:20-bookworm-slim AS build
WORKDIR /app
# Dependencies first, so a change of source alone reuses this layer.
# --ignore-scripts: the `prepare` script would run tsc before the sources are
# here; the build runs explicitly below instead.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY hypervisor/ hypervisor/
COPY domains/ domains/
COPY transport/ transport/
COPY orchestrator/ orchestrator/
# The test-only workers the suite loads compiled (tsconfig.build.json); a few KiB.
COPY tests/workers/ tests/workers/
RUN npm run build

# ---- runtime: production dependencies, compiled JS, examples --------------
FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
# --omit=dev leaves out tsc, so `prepare` (npm run build) cannot run here:
# --ignore-scripts skips it, and dist/ comes from the build stage instead.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist/ dist/
COPY bin/ bin/
COPY examples/ examples/
# The code stays root-owned and read-only to the process; it runs as the
# image's unprivileged `node` user (uid 1000).
USER node
# Fails the build if the compiled CLI cannot even load (a missing module).
RUN node bin/xgsim.js --help > /dev/null
ENTRYPOINT ["node", "bin/xgsim.js"]
CMD ["--help"]
