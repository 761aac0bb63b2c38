# ENTRYPOINT clears an inherited CMD; a later CMD sets it again.
FROM debian:bookworm-slim AS one
ENTRYPOINT ["/docker-entrypoint.sh"]

FROM one AS two
CMD ["postgres"]
ENTRYPOINT ["tini", "--", "/docker-entrypoint.sh"]

FROM two
USER 999:999
ONBUILD COPY . /app/
ONBUILD RUN make
