FROM alpine:3.19
COPY --chmod=u+x,g=r scripts/check.sh /usr/local/bin/check
COPY --chmod=go-w,a+X site/ /srv/site/
COPY --chmod=u=rwx,go=rx conf/app.conf /etc/app/app.conf
COPY --chmod=+x scripts/entrypoint.sh /entrypoint.sh
