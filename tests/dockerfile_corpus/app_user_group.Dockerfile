# A user whose primary group is not its uid, as useradd -g makes it.
FROM debian:bookworm-slim
COPY --chown=app conf/app.conf /etc/app/app.conf
COPY --chown=app:staff conf/extra.conf /etc/app/
COPY --chown=1234 conf/extra.conf /srv/by-id.conf
USER app
WORKDIR /var/lib/app
USER app:staff
WORKDIR /var/lib/app/staff
USER 4321
WORKDIR /var/lib/app/numeric
