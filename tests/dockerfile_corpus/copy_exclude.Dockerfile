FROM alpine:3.19
COPY --exclude=*.css --exclude=**/*.txt site/ /srv/site/
COPY --exclude=extra.conf conf /etc/conf/
