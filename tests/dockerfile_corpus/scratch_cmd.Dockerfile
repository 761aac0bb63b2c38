FROM scratch
COPY bin/app-amd64 /app
CMD /app --serve
