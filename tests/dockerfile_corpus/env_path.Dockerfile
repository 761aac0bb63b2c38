FROM eclipse-temurin:21-jdk
ARG VERSION=1.2.3
ARG BUILD_DATE
ENV JAVA_HOME=/opt/java/openjdk LANG=C.UTF-8 \
    PATH=/opt/app/bin:$PATH
ENV APP_VERSION=$VERSION
LABEL org.opencontainers.image.version=$VERSION org.opencontainers.image.created=$BUILD_DATE
WORKDIR /opt/app
WORKDIR bin
WORKDIR ../lib
WORKDIR $JAVA_HOME/conf
