# flyte-agent-operator image: `agent-operator run` as a non-root user on a slim Python base.
#
#   docker build -t flyte-agent-operator:dev .
#   make kind-up kind-deploy          # build, load into kind, apply manifests/overlays/kind
#
# Stage 1 builds a virtualenv with the package and its dependencies (all of them ship
# binary wheels, so no compiler is needed even here); stage 2 copies only that virtualenv
# onto a fresh slim base: no build tools, no source tree, no pip cache in the final image.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY operator ./operator
# extras: EXTRAS=flytekit adds the in-process flytekit bridge
ARG EXTRAS=""
RUN /opt/venv/bin/pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}" \
 && /opt/venv/bin/agent-operator version

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="flyte-agent-operator" \
      org.opencontainers.image.description="Run Flyte agents as Kubernetes controllers (AgentTask)" \
      org.opencontainers.image.licenses="Apache-2.0"
# numeric uid/gid so Kubernetes can verify runAsNonRoot; matches manifests/base/deployment.yaml
RUN groupadd --system --gid 10001 operator \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin operator
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 8080
# flags come from the Deployment's args (manifests/base/deployment.yaml)
ENTRYPOINT ["agent-operator", "run"]
