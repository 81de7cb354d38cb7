"""A throwaway nginx serving the shipped deploy/nginx.conf on 127.0.0.1, with a self-signed cert.

The site file is used as shipped except for a few checked substitutions: what must differ on a
test machine (listen address, upstream port, certificate paths) and the port-80 redirect server.
A substitution whose pattern is no longer in the file fails loudly, so a test that passes has
run the file operators deploy, not a copy that drifted from it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.redis_server import free_port
from tests.support.stack import ROOT

NGINX = Path("/usr/sbin/nginx")
SITE_CONF = ROOT / "deploy" / "nginx.conf"
STOP_TIMEOUT_S = 5.0


def missing_reason(binary: Path = NGINX) -> str | None:
    """Why nginx cannot run here, or None when it can."""
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        return f"{binary} is missing: make nginx (as root), or apt-get install -y nginx"
    return None


@dataclass(frozen=True)
class Substitution:
    """One checked edit of the site file: pattern must match exactly `count` times."""

    what: str
    pattern: str
    replacement: str
    count: int = 1

    def apply(self, text: str) -> str:
        """The text with the edit made; ValueError when the pattern matches another number of times."""
        result, found = re.subn(self.pattern, self.replacement, text, flags=re.MULTILINE)
        if found != self.count:
            raise ValueError(
                f"{SITE_CONF.name}: expected {self.count} match(es) of {self.pattern!r} ({self.what}), "
                f"found {found}: update tests/support/nginx.py along with the file"
            )
        return result


def _strip_comment(line: str) -> str:
    """A config line without its comment (the file has no '#' inside quoted strings)."""
    return line.split("#", 1)[0]


def drop_server_block(text: str, marker: str) -> str:
    """The text without the one top-level server {} block containing the directive `marker`."""
    lines = text.splitlines(keepends=True)
    blocks: list[tuple[int, int]] = []
    depth, start = 0, -1
    for index, line in enumerate(lines):
        code = _strip_comment(line)
        if depth == 0 and re.match(r"\s*server\s*\{", code):
            start = index
        depth += code.count("{") - code.count("}")
        if depth == 0 and start >= 0:
            blocks.append((start, index))
            start = -1
    matching = [
        (first, last)
        for first, last in blocks
        if any(_strip_comment(line).strip() == marker for line in lines[first : last + 1])
    ]
    if len(matching) != 1:
        raise ValueError(f"{SITE_CONF.name}: expected 1 server block with {marker!r}, found {len(matching)}")
    first, last = matching[0]
    return "".join(lines[:first] + lines[last + 1 :])


def _certificate_substitutions(certificate: Path, key: Path) -> list[Substitution]:
    """The edits that point the file at a throwaway certificate."""
    return [
        Substitution("certificate", r"^(\s*)ssl_certificate \S+;$", rf"\1ssl_certificate {certificate};"),
        Substitution("certificate key", r"^(\s*)ssl_certificate_key \S+;$", rf"\1ssl_certificate_key {key};"),
    ]


def render_site(text: str, *, listen_port: int, upstream_port: int, certificate: Path, key: Path) -> str:
    """deploy/nginx.conf as a test machine runs it: same directives, local addresses, test cert."""
    text = drop_server_block(text, "listen 80;")
    substitutions = [
        Substitution(
            "listen address", r"^(\s*)listen 443 ssl http2;$", rf"\1listen 127.0.0.1:{listen_port} ssl http2;"
        ),
        Substitution(
            "IPv6 listen (a test listens on 127.0.0.1 only)", r"^\s*listen \[::\]:443 ssl http2;\n", ""
        ),
        Substitution(
            "upstream", r"^(\s*)server 127\.0\.0\.1:8000;$", rf"\g<1>server 127.0.0.1:{upstream_port};"
        ),
        *_certificate_substitutions(certificate, key),
    ]
    for substitution in substitutions:
        text = substitution.apply(text)
    return text


def check_syntax(directory: Path, *, binary: Path = NGINX, site: Path = SITE_CONF) -> str:
    """`nginx -t` of the whole shipped file (the port-80 server and IPv6 listens too); its output.

    Only the certificate paths change. nginx -t binds no port, so this needs no root either.
    Raises RuntimeError with nginx's complaint when the file does not load.
    """
    directory.mkdir(parents=True, exist_ok=True)
    certificate, key = directory / "cert.pem", directory / "key.pem"
    write_self_signed(certificate, key)
    text = site.read_text()
    for substitution in _certificate_substitutions(certificate, key):
        text = substitution.apply(text)
    (directory / "site.conf").write_text(text)
    main = directory / "nginx.conf"
    include = f'    include "{directory / "site.conf"}";'
    main.write_text(f'pid "{directory / "nginx.pid"}";\nevents {{}}\nhttp {{\n{include}\n}}\n')
    result = subprocess.run(
        [str(binary), "-t", "-p", str(directory), "-c", str(main), "-e", str(directory / "error.log")],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"nginx -t refused {site.name}: {result.stderr}")
    return result.stderr


def write_self_signed(certificate: Path, key: Path) -> None:
    """A throwaway certificate (and its key) for 127.0.0.1 and localhost, valid for a day."""
    private_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "viber-vote test")])
    now = datetime.datetime.now(datetime.UTC)
    public_key = private_key.public_key()
    # A self-signed trust anchor with the extensions strict verifiers (Python 3.13's
    # VERIFY_X509_STRICT) insist on: CA basic constraints, key usage, key identifiers.
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False)
        .sign(private_key, hashes.SHA256())
    )
    key.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key.chmod(0o600)
    certificate.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class Nginx:
    """deploy/nginx.conf served by a child nginx on 127.0.0.1:listen_port, proxying to upstream_port."""

    def __init__(
        self,
        directory: Path,
        *,
        upstream_port: int,
        listen_port: int | None = None,
        binary: Path = NGINX,
        site: Path = SITE_CONF,
    ) -> None:
        """Prepare (nothing is written or started before start())."""
        self.directory = directory
        self.upstream_port = upstream_port
        self.listen_port = listen_port if listen_port is not None else free_port()
        self.binary = binary
        self.site = site
        self.certificate = directory / "cert.pem"
        self.key = directory / "key.pem"
        self.site_conf = directory / "viber-vote.conf"
        self.main_conf = directory / "nginx.conf"
        self.error_log = directory / "error.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Where clients reach the site."""
        return f"https://127.0.0.1:{self.listen_port}"

    def client_context(self) -> ssl.SSLContext:
        """A TLS client context that trusts the throwaway certificate (and checks the host name)."""
        return ssl.create_default_context(cafile=str(self.certificate))

    def write_config(self) -> None:
        """Write the certificate, the rendered site file, and a main config around it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        write_self_signed(self.certificate, self.key)
        self.site_conf.write_text(
            render_site(
                self.site.read_text(),
                listen_port=self.listen_port,
                upstream_port=self.upstream_port,
                certificate=self.certificate,
                key=self.key,
            )
        )
        self.main_conf.write_text(self._main_config())

    def _main_config(self) -> str:
        """What /etc/nginx/nginx.conf is on Debian, cut to what a throwaway run needs."""
        d = self.directory
        temp_paths = "\n".join(
            f'    {kind}_temp_path "{d / (kind + "_temp")}";'
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        # As root, the workers would drop to `nobody`, who cannot enter pytest's 0700 directories;
        # as anyone else nginx cannot switch user and only warns about the directive.
        user = "user root;\n" if os.geteuid() == 0 else ""
        return (
            "# Generated by tests/support/nginx.py: the shipped site file inside a throwaway http {}.\n"
            f"{user}"
            "worker_processes 1;\n"
            "daemon off;\n"
            "master_process on;\n"
            f'pid "{d / "nginx.pid"}";\n'
            f'error_log "{self.error_log}" info;\n'
            "events {\n    worker_connections 1024;\n}\n"
            "http {\n"
            # Debian's http-level settings that the site file must override for its server.
            "    ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;\n"
            "    ssl_prefer_server_ciphers on;\n"
            "    gzip on;\n"
            f'    access_log "{d / "access.log"}";\n'
            f"{temp_paths}\n"
            f'    include "{self.site_conf}";\n'
            "}\n"
        )

    def start(self, timeout_s: float = 10.0) -> None:
        """Write the config, start nginx, and wait until it completes a TLS handshake."""
        self.write_config()
        with (self.directory / "nginx.stderr").open("ab") as stderr:
            self.process = subprocess.Popen(
                # -e: the error log before the config is read (the default path needs root).
                [
                    str(self.binary),
                    "-p",
                    str(self.directory),
                    "-c",
                    str(self.main_conf),
                    "-e",
                    str(self.error_log),
                ],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        context = self.client_context()
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited ({self.process.returncode}): {self.log_tail()}")
            try:
                with (
                    socket.create_connection(("127.0.0.1", self.listen_port), timeout=1) as raw,
                    context.wrap_socket(raw, server_hostname="127.0.0.1"),
                ):
                    return
            except OSError as exc:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"nginx did not answer ({exc}): {self.log_tail()}") from exc
            time.sleep(0.05)

    def stop(self) -> None:
        """Fast shutdown (SIGTERM closes every connection), SIGKILL to the group if it hangs."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def log_tail(self, lines: int = 20) -> str:
        """The end of the error log and stderr, for failure messages."""
        text = ""
        for path in (self.error_log, self.directory / "nginx.stderr"):
            if path.exists():
                text += path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Nginx:
        """Start on entering a with block."""
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop on leaving it."""
        self.stop()
