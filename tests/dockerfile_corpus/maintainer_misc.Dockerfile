FROM debian:bookworm
MAINTAINER Jane Doe <jane@example.com>
USER root:root
WORKDIR /opt
WORKDIR app
VOLUME /var/lib/app /var/log/app
EXPOSE 53/udp 53/tcp 8000-8010
EXPOSE 9090
STOPSIGNAL 15
ARG UID=1000 GID=1000 NAME
USER ${UID}:${GID}
