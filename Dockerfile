# One image for the API server and the workers (the server never imports torch; the worker does).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY backend backend
COPY worker worker
RUN pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1 && pip install --no-cache-dir -e . "psycopg[binary]>=3.1"
ENV CONCEPTEVO_DATA=/data
VOLUME ["/data"]
EXPOSE 8000
CMD ["conceptevo", "serve", "--host", "0.0.0.0"]
