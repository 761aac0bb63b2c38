# Names missing from /etc/passwd and /etc/group.
FROM debian:bookworm-slim
COPY --chown=ghost conf/app.conf /etc/ghost/app.conf
COPY --chown=1000:nogroup-here conf/extra.conf /etc/ghost/
USER ghost
WORKDIR /srv/ghost
