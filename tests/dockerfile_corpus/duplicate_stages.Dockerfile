# Two stages named alike: COPY --from and the target take the last one.
FROM scratch AS assets
COPY conf/app.conf /assets/first.conf

FROM scratch AS assets
COPY conf/extra.conf /assets/second.conf

FROM debian:bookworm-slim
COPY --from=assets /assets/ /srv/assets/
