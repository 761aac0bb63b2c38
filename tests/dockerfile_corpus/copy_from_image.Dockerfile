FROM busybox:1.36 AS busybox

FROM debian:bookworm-slim
COPY --from=busybox /usr/bin/sh /bin/busybox-sh
COPY --from=gcr.io/distroless/base-debian12 /etc/passwd /etc/passwd.distroless
COPY --from=0 /home/ /home-copy/
