# syntax=docker/dockerfile:1
# openai-cost-exporter: a small, non-root image. Build: docker build -t openai-cost-exporter .
# Run:   docker run -d -p 127.0.0.1:9876:9876 -v openai-cost-state:/var/lib/openai-cost-exporter \
#          -e OPENAI_ADMIN_KEY_FILE=/run/secrets/openai_admin_key ... openai-cost-exporter [extra flags]

# --- build a wheel (and its dependencies) without leaving the build tools in the final image ---
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- runtime ---
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OPENAI_COST_EXPORTER_STATE_DIR=/var/lib/openai-cost-exporter \
    OPENAI_COST_EXPORTER_LISTEN=0.0.0.0:9876
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels openai-cost-exporter \
 && groupadd --system --gid 10001 exporter \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin exporter \
 && install -d -m 0700 -o 10001 -g 10001 /var/lib/openai-cost-exporter

# The SQLite state (cost history, pending Slack messages): keep it on a volume across restarts.
VOLUME /var/lib/openai-cost-exporter
USER 10001:10001
EXPOSE 9876

# python:3.12-slim has no curl; urlopen raises (exit 1) on a refused connection or a non-2xx answer.
HEALTHCHECK --interval=60s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9876/healthz', timeout=4)"]

# Settings come from the environment (OPENAI_COST_EXPORTER_*), so no flag here overrides them.
ENTRYPOINT ["openai-cost-exporter", "run"]
