FROM node:20-alpine
WORKDIR /usr/src/app
ONBUILD ARG NODE_ENV=production
ONBUILD ENV NODE_ENV=$NODE_ENV
ONBUILD COPY package*.json ./
ONBUILD RUN npm ci
ONBUILD COPY --chown=node:node . .
ONBUILD RUN ["npm", "run", "build"]
ONBUILD HEALTHCHECK CMD wget -qO- http://localhost:3000/ || exit 1
onbuild label stage=child
CMD ["npm", "start"]
