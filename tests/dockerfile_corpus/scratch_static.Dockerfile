# syntax=docker/dockerfile:1
ARG VERSION=0.1.0
FROM scratch AS config
ARG VERSION
COPY <<EOF /etc/app/config.yaml
version: ${VERSION:-dev}
EOF

FROM scratch
ARG VERSION
ARG TARGETARCH
LABEL org.opencontainers.image.version=$VERSION \
      org.example.arch=$TARGETARCH
ENV APP_HOME=/app \
    PATH=/app/bin
WORKDIR $APP_HOME
COPY --from=config /etc/app /etc/app
COPY --chmod=755 --chown=65532:65532 bin/app-${TARGETARCH} bin/app
COPY --chmod=644 <<-EOF /etc/app/motd
	built for $TARGETARCH
	EOF
USER 65532:65532
EXPOSE 8080 9090/udp
VOLUME ["/data"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/bin/app"]
CMD ["serve"]
