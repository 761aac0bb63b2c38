from alpine:3.19 as Base
run apk add --no-cache tini
workdir /app
copy . .
env MODE=dev
From Base As Final
Entrypoint ["/sbin/tini", "--"]
cmd ["sh"]
