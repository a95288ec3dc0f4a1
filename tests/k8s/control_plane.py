"""A throwaway Kubernetes control plane on 127.0.0.1: etcd + kube-apiserver, envtest-style.

The binaries come from `scripts/k8s-tools.sh` (built from Go modules into a cache outside the
repository). Certificates are made with trustme, authentication is one static bearer token in
`system:masters`, and everything lives in a temporary directory removed by `stop()`. There is no
controller-manager: namespaces never finish deleting and nothing garbage-collects owned objects.
The flags are those that `scripts/k8s-smoke.sh` proved to work.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
TOOLS_SCRIPT = ROOT / "scripts" / "k8s-tools.sh"


class ToolsUnavailable(RuntimeError):
    """The control-plane binaries cannot be had on this machine (no Go, build failed)."""


def tools_bin_dir() -> Path:
    """The directory holding etcd, kube-apiserver and kubectl; builds them when Go is present."""
    if override := os.environ.get("MAIL_PROXY_K8S_BIN"):
        return Path(override)
    if shutil.which("go") is None and not _cached_bin_dir_complete():
        raise ToolsUnavailable(
            "Go is not installed, so scripts/k8s-tools.sh cannot build kube-apiserver and etcd "
            "(install Go >= 1.26 or set MAIL_PROXY_K8S_BIN to a directory with the binaries)"
        )
    result = subprocess.run(
        [str(TOOLS_SCRIPT), "path"], capture_output=True, text=True, timeout=3600, check=False
    )
    if result.returncode != 0:
        # Go is there, so the tests must run: a failed build is an error, not a skip.
        raise RuntimeError(f"scripts/k8s-tools.sh failed:\n{result.stderr[-3000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def _cached_bin_dir_complete() -> bool:
    """True when the script would not need Go (every binary cached); asks the script itself."""
    result = subprocess.run(
        [str(TOOLS_SCRIPT), "versions"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        return False
    kube = next(
        (line.split()[1] for line in result.stdout.splitlines() if line.startswith("kubernetes")),
        None,
    )
    if kube is None:
        return False
    cache = Path(
        os.environ.get("MAIL_PROXY_TOOLS_CACHE", Path.home() / ".cache/mail-proxy/envtest")
    )
    bin_dir = cache / kube.removeprefix("v") / "bin"
    return all((bin_dir / name).is_file() for name in ("etcd", "kube-apiserver", "kubectl"))


@dataclass
class ControlPlane:
    """A running etcd + kube-apiserver; `kubeconfig` authenticates as cluster admin."""

    bin_dir: Path
    workdir: Path
    url: str
    token: str
    ca_file: Path
    kubeconfig: Path
    startup_seconds: float
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    @property
    def kubectl(self) -> Path:
        return self.bin_dir / "kubectl"

    def stop(self) -> None:
        for proc in reversed(self.processes):
            _terminate(proc)
        self.processes.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


def _write_service_account_keys(pki: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (pki / "sa.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    (pki / "sa.pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _kubeconfig(url: str, ca_file: Path, token: str) -> str:
    return f"""apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: {url}
    certificate-authority: {ca_file}
users:
- name: admin
  user:
    token: {token}
contexts:
- name: test
  context: {{cluster: test, user: admin}}
current-context: test
"""


def _wait_until(check: object, what: str, proc: subprocess.Popen[bytes], limit: float) -> None:
    deadline = time.monotonic() + limit
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        try:
            if check():  # type: ignore[operator]
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {limit:.0f} s")
        time.sleep(0.1)


def start_control_plane(bin_dir: Path) -> ControlPlane:
    """Start etcd and kube-apiserver on free loopback ports and wait until /readyz answers."""
    workdir = Path(tempfile.mkdtemp(prefix="mp-k8s-"))
    pki = workdir / "pki"
    pki.mkdir()
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file = pki / "ca.crt"
    ca.cert_pem.write_to_path(str(ca_file))
    server_cert.private_key_pem.write_to_path(str(pki / "apiserver.key"))
    server_cert.cert_chain_pems[0].write_to_path(str(pki / "apiserver.crt"))
    _write_service_account_keys(pki)
    token = secrets.token_hex(24)
    (pki / "tokens.csv").write_text(f'{token},admin,admin-uid,"system:masters"\n')

    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    etcd_url, peer_url = f"http://127.0.0.1:{etcd_port}", f"http://127.0.0.1:{peer_port}"
    url = f"https://127.0.0.1:{api_port}"
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(_kubeconfig(url, ca_file, token))
    plane = ControlPlane(bin_dir, workdir, url, token, ca_file, kubeconfig, 0.0)
    started = time.monotonic()
    try:
        with (workdir / "etcd.log").open("wb") as log:
            etcd = subprocess.Popen(
                [
                    str(bin_dir / "etcd"),
                    "--name=test",
                    f"--data-dir={workdir / 'etcd'}",
                    f"--listen-client-urls={etcd_url}",
                    f"--advertise-client-urls={etcd_url}",
                    f"--listen-peer-urls={peer_url}",
                    f"--initial-advertise-peer-urls={peer_url}",
                    f"--initial-cluster=test={peer_url}",
                    "--unsafe-no-fsync=true",
                    "--log-level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        plane.processes.append(etcd)
        _wait_until(
            lambda: httpx.get(f"{etcd_url}/health", timeout=2).json().get("health") == "true",
            "etcd",
            etcd,
            60,
        )
        with (workdir / "kube-apiserver.log").open("wb") as log:
            apiserver = subprocess.Popen(
                [
                    str(bin_dir / "kube-apiserver"),
                    "--bind-address=127.0.0.1",
                    "--advertise-address=127.0.0.1",
                    f"--secure-port={api_port}",
                    f"--etcd-servers={etcd_url}",
                    f"--tls-cert-file={pki / 'apiserver.crt'}",
                    f"--tls-private-key-file={pki / 'apiserver.key'}",
                    f"--client-ca-file={ca_file}",
                    f"--cert-dir={workdir / 'cert-dir'}",
                    f"--token-auth-file={pki / 'tokens.csv'}",
                    "--authorization-mode=RBAC",
                    f"--service-account-issuer={url}",
                    f"--service-account-key-file={pki / 'sa.pub'}",
                    f"--service-account-signing-key-file={pki / 'sa.key'}",
                    "--service-cluster-ip-range=10.0.0.0/24",
                    "--allow-privileged=true",
                    # no controller-manager makes no default ServiceAccount (as envtest does)
                    "--disable-admission-plugins=ServiceAccount",
                    # the lease reconciler refuses a loopback advertise address
                    "--endpoint-reconciler-type=none",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        plane.processes.append(apiserver)
        headers = {"Authorization": f"Bearer {token}"}
        verify = plane.ssl_context()
        _wait_until(
            lambda: (
                httpx.get(f"{url}/readyz", headers=headers, verify=verify, timeout=5).status_code
                == 200
            ),
            "kube-apiserver",
            apiserver,
            180,
        )
    except Exception as exc:
        logs = plane.log_tail("kube-apiserver") or plane.log_tail("etcd")
        plane.stop()
        raise RuntimeError(f"control plane did not start: {exc}\n{logs}") from exc
    except BaseException:
        plane.stop()
        raise
    plane.startup_seconds = time.monotonic() - started
    return plane
