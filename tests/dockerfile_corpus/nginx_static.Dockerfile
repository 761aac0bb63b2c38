FROM node:20 AS site
WORKDIR /site
COPY . .
RUN npm ci && npm run build

FROM nginx:1.25-alpine
COPY --from=site --chown=nginx:nginx /site/public /usr/share/nginx/html
COPY nginx.conf /etc/nginx/conf.d/default.conf
EXPOSE 80 443
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
