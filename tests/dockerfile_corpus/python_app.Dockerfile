FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=off
WORKDIR /app
COPY requirements.txt .
COPY app/ ./app/
EXPOSE 8000
CMD ["python", "-m", "app"]
