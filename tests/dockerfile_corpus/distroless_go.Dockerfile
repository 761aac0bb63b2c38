# A static Go binary on distroless, as Go project templates ship it.
FROM gcr.io/distroless/static-debian12:nonroot
ARG TARGETARCH
COPY --chown=nonroot:nonroot bin/app-${TARGETARCH} /usr/local/bin/app
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/app"]
