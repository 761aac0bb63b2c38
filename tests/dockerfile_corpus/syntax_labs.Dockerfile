# syntax=docker/dockerfile:1.7-labs
FROM golang:1.22 AS build
WORKDIR /src
COPY --parents ./cmd/*/main.go ./internal/ ./
COPY --exclude=*.md --exclude=docs/ . .
COPY --link --chmod=644 config.yaml /etc/app/
ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d https://example.com/tool.tgz /tmp/
ADD --keep-git-dir=true https://github.com/moby/buildkit.git#v0.12.5 /buildkit
RUN --network=none --security=sandbox go build ./...
