FROM alpine:3.19
RUN set -eux; \
	apk add --no-cache \
		bash \
		ca-certificates \
# comment lines may start at column zero inside a continuation
		curl \
		jq \
		openssh-client \
	; \
	update-ca-certificates; \
	adduser -D -u 1000 tools

USER tools
WORKDIR /home/tools
ENTRYPOINT ["/bin/bash"]
