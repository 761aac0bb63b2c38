FROM alpine:3.19
COPY *.json /app/
COPY conf/*.conf /etc/app/
COPY ["file name.txt", "/dest dir/"]
COPY site/c?s/ /assets/
COPY nothing-matches-* /app/
