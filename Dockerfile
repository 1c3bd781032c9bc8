# flyte-agent-operator image: `agent-operator run` as a non-root user on a slim Python base.
#
#   docker build -t registry.example.com/flyte-agent-operator:0.1.0 .
#   make image                        # the same file, built without a daemon (docs/image.md)
#
# Behind a proxy that re-signs HTTPS, hand pip your CA bundle as a build secret (mounted for
# the one RUN that installs, never stored in a layer):
#   docker build --secret id=ca-bundle,src=/etc/ssl/certs/ca-certificates.crt ...
#
# Stage 1 builds a virtualenv from requirements/image.lock (every dependency pinned with its
# hashes, plus the build backend, so the package itself builds with --no-index); stage 2 copies
# only that virtualenv onto a fresh slim base: no build tools, no source tree, no pip cache.

# Fully qualified, so buildah/podman resolve it without a short-name prompt; pass
# --build-arg PYTHON_IMAGE=<your mirror>/python:3.11-slim-bookworm to use a mirror.
ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
# the locked dependencies first: a source change rebuilds only the last RUN
COPY requirements/image.lock requirements/image-flytekit.lock ./requirements/
# EXTRAS=flytekit adds the in-process flytekit bridge (locked in requirements/image-flytekit.lock)
ARG EXTRAS=""
RUN --mount=type=secret,id=ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
 && /opt/venv/bin/pip install --require-hashes --no-deps -r "requirements/image${EXTRAS:+-$EXTRAS}.lock"
COPY pyproject.toml README.md LICENSE ./
COPY operator ./operator
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation --no-index ".${EXTRAS:+[$EXTRAS]}" \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/pip uninstall --yes setuptools wheel \
 && /opt/venv/bin/agent-operator version

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="flyte-agent-operator" \
      org.opencontainers.image.description="Run Flyte agents as Kubernetes controllers (AgentTask)" \
      org.opencontainers.image.licenses="Apache-2.0"
# numeric uid/gid so Kubernetes can verify runAsNonRoot; matches manifests/base/deployment.yaml.
# Not named `operator`: Debian (and so the official python images) has an `operator` group (gid 37).
RUN groupadd --system --gid 10001 agent-operator \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin agent-operator
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 8080
# flags come from the Deployment's args (manifests/base/deployment.yaml)
ENTRYPOINT ["agent-operator", "run"]
