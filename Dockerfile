FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY services services
COPY streams streams
COPY models models
COPY config config
COPY bench bench
RUN pip install --no-cache-dir .
ENTRYPOINT []
CMD ["streamlearn", "--help"]
