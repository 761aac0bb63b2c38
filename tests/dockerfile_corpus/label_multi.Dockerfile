FROM alpine:3.19
LABEL maintainer="ops@example.com"
LABEL org.opencontainers.image.source="https://example.com/repo" \
      org.opencontainers.image.revision="${GIT_SHA}" \
      "com.example.quoted key"="quoted value" \
      com.example.empty=""
LABEL version 1.0
LABEL a=b c=d e="f g"
