FROM redis:7-alpine AS cache
HEALTHCHECK --interval=5s --timeout=3s --retries=5 CMD ["redis-cli", "ping"]

FROM postgres:16 AS db
HEALTHCHECK --interval=10s --start-period=30s --start-interval=2s \
  CMD pg_isready -U postgres || exit 1

FROM nginx:1.25
HEALTHCHECK NONE
HEALTHCHECK --interval=1m30s --timeout=10s cmd curl -fsS http://localhost/ || exit 1
