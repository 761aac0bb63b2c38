FROM alpine
ARG NAME="a name" OTHER='single'
ENV QUOTED="say \"hi\"" DOLLAR='$NOT_EXPANDED' ESCAPED=\$ALSO_NOT
ENV NESTED="${NAME:-x} and ${MISSING:-default value}"
LABEL "key with spaces"="value with \"quotes\""
WORKDIR "/path with spaces"
COPY ["file name.txt", "other file.txt", "/dest/"]
RUN echo "it's" 'a "test"' \$HOME
USER "1000"
