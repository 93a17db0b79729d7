# One image for the API server and the workers (the server never imports torch; the worker does).
# docker-compose.yml runs it as `conceptevo serve --host 0.0.0.0 --port 8000` (api) and `conceptevo worker`.

# The page, built once by Vite.
FROM node:20-slim AS frontend
WORKDIR /frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY frontend ./
RUN npm run build

FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY backend backend
COPY worker worker
COPY --from=frontend /frontend/dist frontend/dist
# Editable: the server finds frontend/dist next to backend/ (backend.api.settings.DEFAULT_FRONTEND_DIST).
RUN pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1 && pip install --no-cache-dir -e ".[postgres]"
ENV CONCEPTEVO_DATA=/data
VOLUME ["/data"]
EXPOSE 8000
CMD ["conceptevo", "serve", "--host", "0.0.0.0", "--port", "8000"]
