ARG REGISTRY=docker.io
ARG BASE_IMAGE=${REGISTRY}/library/alpine
ARG VERSION=3.19
# A meta ARG is only visible in FROM lines until a stage declares it again.
FROM ${BASE_IMAGE}:${VERSION} AS base
ARG VERSION
ARG BUILD_DATE
ARG REVISION=unknown
LABEL version=$VERSION revision=$REVISION built=$BUILD_DATE
ENV VERSION=v${VERSION}

FROM base
ARG VERSION=override
LABEL final.version=$VERSION
