FROM python:3.12-slim AS builder
ENV PIP_NO_CACHE_DIR 1
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"
COPY requirements.txt .
RUN pip install --upgrade pip wheel \
 && pip install -r requirements.txt

FROM python:3.12-slim
LABEL org.opencontainers.image.title="api" \
      org.opencontainers.image.description="The API service" \
      org.opencontainers.image.licenses=Apache-2.0
COPY --from=builder /opt/venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH" PYTHONUNBUFFERED=1
WORKDIR /srv/app
COPY app/ ./app/
RUN useradd --create-home --uid 10001 app
USER 10001
EXPOSE 8000
CMD ["gunicorn", "-b", "0.0.0.0:8000", "app.wsgi:application"]
