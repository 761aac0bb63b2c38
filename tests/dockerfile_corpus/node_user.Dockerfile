# The node image's own user: --chown by name alone takes its primary group.
FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /home/node/app
COPY --chown=node package.json package-lock.json ./
COPY --chown=node:node server.js ./
USER node
WORKDIR /home/node/app/data
EXPOSE 3000
CMD node server.js
