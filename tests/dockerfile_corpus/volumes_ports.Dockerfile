FROM mysql:8.0
VOLUME /var/lib/mysql
VOLUME ["/etc/mysql/conf.d", "/docker-entrypoint-initdb.d"]
EXPOSE 3306 33060
EXPOSE 7000-7002/udp 9000/sctp
STOPSIGNAL SIGRTMIN+3
