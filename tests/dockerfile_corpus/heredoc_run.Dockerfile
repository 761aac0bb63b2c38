# syntax=docker/dockerfile:1
FROM debian:bookworm-slim
RUN <<EOF
set -eux
apt-get update
apt-get install -y --no-install-recommends ca-certificates curl
rm -rf /var/lib/apt/lists/*
EOF
RUN <<-EOT bash
	set -e
	echo "tabs are stripped by <<-"
	for i in 1 2 3; do
		echo "$i"
	done
	EOT
RUN python3 <<PY
print("hello from python")
PY
RUN 3<<EOF cat /dev/fd/3
file descriptor three
EOF
RUN <<A <<B
echo first
A
echo second
B
RUN cat <<'EOF' > /etc/motd
Welcome, $USER: this is not expanded
EOF
RUN --mount=type=secret,id=token <<EOF
TOKEN=$(cat /run/secrets/token)
echo "${#TOKEN} bytes"
EOF
