# Symlinks inside copied directories stay symlinks; destination symlinks of the image are
# followed (/bin -> usr/bin, /var/run -> ../run).
FROM alpine:3.19
COPY links/ /opt/links/
COPY links/to-app.conf /etc/linked.conf
COPY bin/app-amd64 /bin/app-in-bin
COPY conf/app.conf /var/run/app/
