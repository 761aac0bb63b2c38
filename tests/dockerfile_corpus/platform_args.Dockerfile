FROM --platform=$BUILDPLATFORM tonistiigi/xx:1.4.0 AS xx

FROM --platform=$BUILDPLATFORM golang:1.22-alpine AS build
COPY --from=xx / /
ARG TARGETPLATFORM
RUN xx-apk add --no-cache musl-dev gcc
ENV CGO_ENABLED=1
RUN xx-go build -o /out/app . && xx-verify /out/app
RUN echo "building on $BUILDPLATFORM for $TARGETPLATFORM"

FROM --platform=${TARGETPLATFORM:-linux/amd64} alpine:3.19
COPY --from=build /out/app /usr/bin/app
