# COPY --link writes onto an empty layer: destination symlinks are not followed, existing
# directory modes are not kept.
FROM alpine:3.19
COPY --link bin/app-amd64 /bin/app
COPY --link conf/app.conf /etc/private/app.conf
COPY --link --chown=1000:1000 site/ /var/run/site/
COPY --link --chmod=644 conf/extra.conf /bin/extra.conf
