# A COPY that writes what is already there: its layer holds only what changed.
FROM debian:bookworm-slim
COPY conf/ /etc/app/
COPY conf/ /etc/app/
COPY site/index.html conf/app.conf /etc/app/
COPY --chmod=600 conf/app.conf /etc/app/app.conf
