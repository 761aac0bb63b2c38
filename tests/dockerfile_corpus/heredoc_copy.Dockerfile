# syntax=docker/dockerfile:1.4
FROM alpine:3.19
ARG APP_NAME=demo
ENV GREETING=hello
COPY <<EOF /etc/app.conf
name=${APP_NAME}
greeting=$GREETING
quoted='$GREETING' "${APP_NAME}"
EOF
COPY <<"EOF" /usr/local/bin/entrypoint.sh
#!/bin/sh
exec "$@"
EOF
COPY --chmod=0755 <<-'SCRIPT' /usr/local/bin/check
	#!/bin/sh
	test -f /etc/app.conf
	SCRIPT
COPY <<one.txt <<two.txt /data/
first file
one.txt
second file
two.txt
ADD <<EOF /etc/added.txt
added content
EOF
ENTRYPOINT ["/usr/local/bin/entrypoint.sh"]
