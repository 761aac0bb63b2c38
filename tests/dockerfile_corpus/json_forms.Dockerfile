FROM busybox
SHELL ["/bin/sh", "-c"]
RUN ["echo", "json", "form"]
RUN [ "echo", "spaces inside the brackets" ]
RUN ["echo", "unicode \u00e9 and escaped \"quotes\""]
RUN [echo, not, json]
CMD [ "not valid json", ]
VOLUME ["/data", "/logs"]
VOLUME /cache /tmp/run
COPY ["src dir/", "/dest dir/"]
ADD ["https://example.com/archive.tar.gz", "/tmp/"]
ENTRYPOINT ["/bin/sh", "-c", "exec \"$@\"", "--"]
CMD []
