"""Per-host validation: one host's merged variables become a typed :class:`Host`.

Checks what only makes sense once a host's variables are merged: the shell its transport
allows, the password source, WinRM authentication needs, root web.config paths and the
policy's fit with the managed frameworks. Each error names the line that set the variable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from farmsync.algorithms import FRAMEWORK_V2, VALIDATION_ALGORITHMS
from farmsync.errors import InputError
from farmsync.inventory.graph import GroupGraph, HostDecl, Var
from farmsync.inventory.model import (
    Host,
    Policy,
    RecycleKind,
    RecycleSpec,
    Secret,
    Shell,
    SshSettings,
    Transport,
    WinrmSettings,
)
from farmsync.inventory.variables import VARIABLES, EnvPassword, is_secret_name

_WINRM_PASSWORD_TRANSPORTS = ("ntlm", "credssp", "basic", "plaintext", "ssl")

_Typed = Callable[[str], Any]  # a variable's typed value for the host being built
_LineOf = Callable[[str], int]  # the line that set it (or the host's line)


class HostBuilder:
    """Builds each host of ``graph``; passwords named by environment variable come from
    ``environ``. Errors and warnings go through the graph, which knows the file."""

    def __init__(self, graph: GroupGraph, environ: Mapping[str, str]):
        self.graph = graph
        self.environ = environ

    def error(self, message: str, line: int | None) -> InputError:
        return self.graph.error(message, line)

    def warn(self, message: str, line: int | None) -> None:
        self.graph.warn(message, line)

    def build_host(self, decl: HostDecl, default_farm: str) -> Host:
        merged = self.graph.merged(decl)

        def typed(name: str) -> Any:
            var = merged.get(name)
            return VARIABLES[name].default if var is None else var.typed

        def line_of(name: str) -> int:
            var = merged.get(name)
            return decl.line if var is None else var.line

        name = decl.name
        transport: Transport = typed("ansible_connection")
        shell = self.shell(
            name, transport, typed("ansible_shell_type"), line_of("ansible_shell_type")
        )
        default_address = "localhost" if transport is Transport.LOCAL else name
        address: str = typed("ansible_host") or default_address
        winrm = self.winrm_settings(typed)
        port = self.port(transport, typed("ansible_port"), winrm.scheme)
        user: str | None = typed("ansible_user")
        password = self.password(name, merged)
        self.check_winrm_auth(name, decl.line, transport, winrm, user, password, line_of)
        root_configs = self.root_configs(name, decl.line, shell, typed, line_of)
        app_configs: tuple[str, ...] = typed("farmsync_app_configs")
        if shell is Shell.POSIX:
            for path in app_configs:
                if not path.startswith("/"):
                    raise self.error(
                        f"host {name!r}: farmsync_app_configs path {path!r} must be absolute",
                        line_of("farmsync_app_configs"),
                    )
        recycle: RecycleSpec = typed("farmsync_recycle")
        if recycle.kind is RecycleKind.IIS and shell is not Shell.POWERSHELL:
            raise self.error(
                f"host {name!r}: farmsync_recycle iis needs a Windows host (winrm or powershell)",
                line_of("farmsync_recycle"),
            )
        ssh = SshSettings(
            private_key_file=typed("ansible_ssh_private_key_file"),
            known_hosts_file=typed("farmsync_known_hosts"),
            jump_host=typed("farmsync_ssh_jump"),
        )
        # Raw variables stay available to upper layers, secrets wrapped so no repr shows them.
        visible = {
            key: Secret(str(var.value))
            if is_secret_name(key) and var.value is not None
            else var.value
            for key, var in merged.items()
        }
        return Host(
            name=name,
            farm=typed("farmsync_farm") or default_farm,
            transport=transport,
            address=address,
            port=port,
            shell=shell,
            user=user,
            password=password,
            root_configs=root_configs,
            app_configs=app_configs,
            recycle=recycle,
            policy=typed("farmsync_policy"),
            ssh=ssh,
            winrm=winrm,
            timeout=typed("farmsync_timeout"),
            groups=tuple(sorted(g.name for g in self.graph.ancestors(decl) if g.name != "all")),
            source_line=decl.line,
            variables=MappingProxyType(visible),
        )

    def shell(self, name: str, transport: Transport, explicit: Shell | None, line: int) -> Shell:
        if transport is Transport.WINRM:
            if explicit is Shell.POSIX:
                raise self.error(f"host {name!r}: WinRM hosts use powershell, not sh", line)
            return Shell.POWERSHELL
        return explicit or Shell.POSIX

    def winrm_settings(self, typed: _Typed) -> WinrmSettings:
        scheme: str | None = typed("ansible_winrm_scheme")
        port: int | None = typed("ansible_port")
        if scheme is None:
            scheme = "http" if port == 5985 else "https"  # Ansible's rule
        settings = WinrmSettings(
            transport=typed("ansible_winrm_transport"),
            scheme=scheme,
            cert_validation=typed("ansible_winrm_server_cert_validation"),
            ca_trust_path=typed("ansible_winrm_ca_trust_path"),
            allow_insecure_basic=typed("farmsync_winrm_allow_insecure_basic"),
            cert_pem=typed("ansible_winrm_cert_pem"),
            cert_key_pem=typed("ansible_winrm_cert_key_pem"),
            path=typed("ansible_winrm_path"),
            max_envelope_kb=typed("farmsync_winrm_max_envelope_kb"),
        )
        return settings

    @staticmethod
    def port(transport: Transport, explicit: int | None, scheme: str) -> int:
        if explicit is not None:
            return explicit
        if transport is Transport.WINRM:
            return 5986 if scheme == "https" else 5985
        if transport is Transport.SSH:
            return 22
        return 0  # local: no port

    def password(self, name: str, merged: dict[str, Var]) -> Secret | None:
        plain = merged.get("ansible_password")
        env = merged.get("farmsync_password_env")
        if plain is not None and env is not None:
            raise self.error(
                f"host {name!r} has both ansible_password (line {plain.line}) and "
                f"farmsync_password_env (line {env.line}); keep one",
                max(plain.line, env.line),
            )
        env_name: str | None = None
        line, via = 0, ""
        if env is not None:
            env_name, line, via = env.typed, env.line, "farmsync_password_env"
        elif plain is not None and isinstance(plain.typed, EnvPassword):
            env_name, line, via = plain.typed.env_name, plain.line, "ansible_password lookup"
        elif plain is not None:
            self.warn(
                "plaintext ansible_password in the inventory; set farmsync_password_env to the "
                "name of an environment variable holding it instead",
                plain.line,
            )
            secret: Secret = plain.typed
            return secret
        if env_name is None:
            return None
        value = self.environ.get(env_name)
        if value is None:
            raise self.error(
                f"host {name!r}: environment variable {env_name}, named by {via} to hold "
                "the password, is not set",
                line,
            )
        if value == "":
            raise self.error(
                f"host {name!r}: environment variable {env_name}, named by {via} to hold "
                "the password, is empty",
                line,
            )
        return Secret(value)

    def check_winrm_auth(
        self,
        name: str,
        line: int,
        transport: Transport,
        winrm: WinrmSettings,
        user: str | None,
        password: Secret | None,
        line_of: _LineOf,
    ) -> None:
        if transport is not Transport.WINRM:
            return
        auth = winrm.transport
        if auth in _WINRM_PASSWORD_TRANSPORTS and (user is None or password is None):
            missing = "ansible_user" if user is None else "a password (farmsync_password_env)"
            raise self.error(f"host {name!r}: WinRM {auth} authentication needs {missing}", line)
        if auth == "certificate" and (winrm.cert_pem is None or winrm.cert_key_pem is None):
            raise self.error(
                f"host {name!r}: WinRM certificate authentication needs ansible_winrm_cert_pem "
                "and ansible_winrm_cert_key_pem",
                line_of("ansible_winrm_transport"),
            )
        insecure = auth in ("basic", "plaintext") and winrm.scheme == "http"
        if insecure and not winrm.allow_insecure_basic:
            raise self.error(
                f"host {name!r}: Basic authentication over plain HTTP sends the password in clear; "
                "use https or set farmsync_winrm_allow_insecure_basic: true",
                line_of("ansible_winrm_transport"),
            )
        if not winrm.cert_validation and winrm.scheme == "https":
            self.warn(
                "ansible_winrm_server_cert_validation: ignore accepts any certificate; "
                "prefer ansible_winrm_ca_trust_path",
                line_of("ansible_winrm_server_cert_validation"),
            )

    def root_configs(
        self, name: str, line: int, shell: Shell, typed: _Typed, line_of: _LineOf
    ) -> tuple[str, ...]:
        explicit: tuple[str, ...] = typed("farmsync_root_configs")
        if shell is Shell.POSIX:
            if not explicit:
                raise self.error(
                    f"host {name!r} is not a Windows host (no winrm, no powershell shell): "
                    "list its root web.config files in farmsync_root_configs",
                    line,
                )
            for path in explicit:
                if not path.startswith("/"):
                    raise self.error(
                        f"host {name!r}: farmsync_root_configs path {path!r} must be absolute",
                        line_of("farmsync_root_configs"),
                    )
            return explicit
        frameworks: tuple[str, ...] = typed("farmsync_frameworks")
        policy: Policy = typed("farmsync_policy")
        if FRAMEWORK_V2 in frameworks and not VALIDATION_ALGORITHMS[policy.validation].v2_ok:
            raise self.error(
                f"host {name!r}: {FRAMEWORK_V2} does not support validation {policy.validation}; "
                "set farmsync_policy validation to SHA1 (or drop v2.0.50727)",
                line_of("farmsync_frameworks"),
            )
        if explicit:
            return explicit
        return windows_root_configs(frameworks, typed("farmsync_bitness"))


def windows_root_configs(frameworks: tuple[str, ...], bitness: tuple[int, ...]) -> tuple[str, ...]:
    """The machine-level web.config of each framework version and bitness, as Windows paths."""
    paths: list[str] = []
    for version in frameworks:
        for bits in bitness:
            folder = "Framework64" if bits == 64 else "Framework"
            paths.append(rf"%windir%\Microsoft.NET\{folder}\{version}\CONFIG\web.config")
    return tuple(paths)
