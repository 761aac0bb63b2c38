FROM debian:bookworm-slim
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENTRYPOINT exec /usr/local/bin/start "$@"
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 CMD curl -fsS http://localhost/ || exit 1
CMD ["--port", "8080"]
