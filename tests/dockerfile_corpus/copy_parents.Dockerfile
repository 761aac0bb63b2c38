# COPY --parents keeps the source paths (generally available since Dockerfile 1.20).
FROM golang:1.22-alpine
WORKDIR /src
COPY --parents cmd/*/main.go ./
COPY --parents ./app/./pkg/ /srv/
COPY --parents site/css/*.css conf/app.conf /parents/
