# COPY --from with --parents: each source keeps its path from the stage's root (after a /./ pivot).
FROM alpine:3.19 AS files
COPY site/ /build/site/
COPY conf/ /build/conf/

FROM alpine:3.19
COPY --from=files --parents /build/site/css/*.css /out/
COPY --from=files --parents build/./conf/ /etc/
COPY --from=files --parents /build/./site/index.html /build/conf/app.conf /www/
