# --chmod applies to the directories COPY creates, as well as to what it copies.
FROM alpine:3.19
COPY --chmod=750 site/ /srv/www/html/
COPY --chmod=0640 conf/app.conf /etc/secret/app/
COPY --chmod=755 scripts /opt/tools/scripts/
