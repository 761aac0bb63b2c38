FROM debian:bookworm-slim
ADD vendor.tar.gz /opt/vendor/
ADD --chown=1000:1000 vendor.tar.gz /opt/vendor-owned/
ADD --chown=node plain.tar /opt/plain/
ADD conf/app.conf /etc/app/added.conf
