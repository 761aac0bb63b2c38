# COPY . with the context's .dockerignore (logs, node_modules, secrets left out).
FROM node:20-alpine
WORKDIR /usr/src/app
COPY . .
