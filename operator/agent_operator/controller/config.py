"""Where the operator's API credentials come from: a kubeconfig or the pod's service account.

* ``--kubeconfig PATH`` (or, outside a pod, ``$KUBECONFIG`` / ``~/.kube/config``) is read by
  the ``kubernetes`` package's public loader (``kubernetes.config.load_kube_config``), so
  client certificates, bearer tokens, token files, exec credential plugins and auth
  providers behave exactly as in ``kubectl``-compatible Python tools;
* in a pod (``KUBERNETES_SERVICE_HOST``/``_PORT`` set) the service-account token and CA are
  read from the projected volume, and the token file is re-read at every refresh because
  the kubelet rotates it.

Both give a :class:`ClusterConfig`: where the API server is, how to verify it, and a
blocking ``authorization()`` that returns the current ``Authorization`` header value
(refreshing expired credentials).  The client calls it off the event loop, at most once a
refresh period or after a 401.
"""

from __future__ import annotations

import base64
import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class ConfigError(Exception):
    """No usable credentials (names the file or variable that is missing or wrong)."""


@dataclass(frozen=True)
class ClusterConfig:
    """How to reach and authenticate to one API server."""

    server: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True
    tls_server_name: str | None = None
    #: blocking: the current ``Authorization`` header value (None: certificates only)
    authorization: Callable[[], str | None] = field(default=lambda: None, repr=False, compare=False)
    #: namespace of the service account (in-cluster) or of the kubeconfig context
    namespace: str | None = None
    source: str = ""

    def ssl_context(self) -> ssl.SSLContext | None:
        """TLS settings for an ``https`` server (None for plain ``http``)."""
        if not self.server.startswith("https://"):
            return None
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def load(kubeconfig: str | None = None, *, service_account_dir: str = SERVICE_ACCOUNT_DIR,
         environ: Mapping[str, str] | None = None) -> ClusterConfig:
    """``kubeconfig`` when given; else in-cluster when in a pod; else the default kubeconfig."""
    env = os.environ if environ is None else environ
    if kubeconfig:
        return from_kubeconfig(kubeconfig)
    if env.get("KUBERNETES_SERVICE_HOST") and env.get("KUBERNETES_SERVICE_PORT"):
        return in_cluster(service_account_dir, env)
    return from_kubeconfig(None)


def in_cluster(directory: str = SERVICE_ACCOUNT_DIR, environ: Mapping[str, str] | None = None) -> ClusterConfig:
    """The pod's service account: ``token``, ``ca.crt`` and ``namespace`` in ``directory``."""
    env = os.environ if environ is None else environ
    host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise ConfigError("not in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set")
    root = Path(directory)
    token_file, ca_file = root / "token", root / "ca.crt"
    for path in (token_file, ca_file):
        if not path.is_file():
            raise ConfigError(f"in-cluster credentials: {path} does not exist (is the service-account token mounted?)")

    def authorization() -> str:
        token = token_file.read_text().strip()
        if not token:
            raise ConfigError(f"in-cluster credentials: {token_file} is empty")
        return f"Bearer {token}"

    authorization()  # fail now, not at the first request
    namespace_file = root / "namespace"
    namespace = namespace_file.read_text().strip() if namespace_file.is_file() else None
    server_host = f"[{host}]" if ":" in host else host
    return ClusterConfig(server=f"https://{server_host}:{port}", ca_file=str(ca_file), authorization=authorization,
                         namespace=namespace or None, source=f"in-cluster service account ({directory})")


def from_kubeconfig(path: str | None) -> ClusterConfig:
    """A kubeconfig file's current context (``path`` None: ``$KUBECONFIG`` or ``~/.kube/config``)."""
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        config.load_kube_config(config_file=path, client_configuration=configuration)  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError, TypeError, ValueError) as e:
        raise ConfigError(f"kubeconfig {path or os.environ.get('KUBECONFIG') or '~/.kube/config'}: {e}") from None
    return _from_configuration(configuration, f"kubeconfig {path or os.environ.get('KUBECONFIG') or '~/.kube/config'}",
                               _context_namespace(path))


def _from_configuration(configuration: Any, source: str, namespace: str | None) -> ClusterConfig:
    """A ``kubernetes.client.Configuration`` filled by its loader, through its public attributes."""

    def authorization() -> str | None:
        # runs the loader's refresh hook (exec plugins, expiring tokens) when one is set
        bearer: str | None = configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
        if bearer:
            return bearer if " " in bearer else f"Bearer {bearer}"
        if configuration.username or configuration.password:
            raw = f"{configuration.username or ''}:{configuration.password or ''}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        return None

    return ClusterConfig(
        server=str(configuration.host).rstrip("/"),
        ca_file=configuration.ssl_ca_cert or None,
        cert_file=configuration.cert_file or None,
        key_file=configuration.key_file or None,
        verify=bool(configuration.verify_ssl),
        tls_server_name=configuration.tls_server_name or None,
        authorization=authorization,
        namespace=namespace,
        source=source,
    )


def _context_namespace(path: str | None) -> str | None:
    """The current context's namespace, if the kubeconfig sets one."""
    from kubernetes import config

    try:
        _, current = config.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError, TypeError, ValueError):
        return None
    ns = (current or {}).get("context", {}).get("namespace")
    return str(ns) if ns else None
