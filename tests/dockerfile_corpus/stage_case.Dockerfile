# Stage names are matched without regard to case by COPY --from and FROM.
FROM debian:bookworm-slim AS Builder
COPY conf/ /conf/

FROM builder AS Final
COPY --from=BUILDER /conf/app.conf /etc/app.conf
STOPSIGNAL 9
