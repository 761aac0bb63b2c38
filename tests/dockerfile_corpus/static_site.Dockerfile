FROM scratch AS build
COPY site/ /out/
COPY conf/nginx.conf /out/nginx.conf

FROM nginx:alpine
COPY --from=build /out /usr/share/nginx/html
COPY --from=build --chown=101:101 /out/nginx.conf /etc/nginx/conf.d/default.conf
