FROM alpine:3.19
RUN echo crlf \
    && echo line endings
LABEL a=b
COPY <<EOF /x
body
EOF
CMD ["sh"]
