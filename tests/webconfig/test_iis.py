"""Data-driven tests of IIS's own files (tests/webconfig/iis_corpus), written from the
documented applicationHost.config and redirection.config schema: what the audit and the node
agent read from them, as pure functions over bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from farmsync.errors import ConfigFileError
from farmsync.webconfig.iis import (
    APPLICATION_HOST_CONFIG,
    expand_env,
    is_unc,
    machine_config_for,
    parse_application_host,
    parse_redirection,
    physical_paths,
    root_config_for,
)

CORPUS = Path(__file__).parent / "iis_corpus"
V4 = "v4.0.30319"
V2 = "v2.0.50727"


def data(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


# name -> (site/app name, pool, framework or None, bitness, physical path, allowSubDirConfig)
APPS: dict[str, list[tuple[str, str, str | None, int, str, bool]]] = {
    "01-default.applicationHost.config": [
        ("Default Web Site", "DefaultAppPool", V4, 64, r"%SystemDrive%\inetpub\wwwroot", True),
    ],
    "02-farm.applicationHost.config": [
        ("Default Web Site", "DefaultAppPool", V4, 64, r"%SystemDrive%\inetpub\wwwroot", True),
        ("Default Web Site/shop", "ShopPool", V4, 64, r"D:\sites\shop", True),
        ("Default Web Site/shop/admin", "Wow32Pool", V4, 32, r"D:\sites\shop-admin", False),
        ("Default Web Site/legacy", "Legacy32", V2, 32, r"%SystemDrive%\legacy", True),
        ("Intranet", "Clr2Pool", V2, 64, r"\\fileserver.example\intranet$\wwwroot", True),
        ("Intranet/static", "StaticPool", None, 64, r"D:\static", True),
        ("Api", "ServicePool", V4, 64, "D:\\sites\\api\\", True),
    ],
    "06-iis7-defaults.applicationHost.config": [
        ("Locked", "DefaultAppPool", V4, 64, r"E:\locked", False),
    ],
}


@pytest.mark.parametrize("name", sorted(APPS))
def test_applications_pools_and_inherited_root(name: str) -> None:
    parsed = parse_application_host(data(name), name)
    found = []
    for app in parsed.applications:
        pool = parsed.pool_of(app)
        found.append(
            (
                app.name,
                pool.name,
                pool.framework,
                pool.bitness,
                app.physical_path,
                app.allow_subdir_config,
            )
        )
    assert found == APPS[name]


def test_the_root_config_follows_framework_and_bitness() -> None:
    parsed = parse_application_host(data("02-farm.applicationHost.config"), "farm")
    roots = {
        app.name: root_config_for(parsed.pool_of(app).framework or V4, parsed.pool_of(app).bitness)
        for app in parsed.applications
    }
    assert (
        roots["Default Web Site"]
        == r"%windir%\Microsoft.NET\Framework64\v4.0.30319\CONFIG\web.config"
    )
    assert roots["Default Web Site/shop/admin"] == (
        r"%windir%\Microsoft.NET\Framework\v4.0.30319\CONFIG\web.config"
    )
    assert roots["Default Web Site/legacy"] == (
        r"%windir%\Microsoft.NET\Framework\v2.0.50727\CONFIG\web.config"
    )
    assert roots["Intranet"] == r"%windir%\Microsoft.NET\Framework64\v2.0.50727\CONFIG\web.config"
    assert machine_config_for(roots["Intranet"]) == (
        r"%windir%\Microsoft.NET\Framework64\v2.0.50727\CONFIG\machine.config"
    )
    assert machine_config_for("/etc/mono/4.5/web.config") == "/etc/mono/4.5/machine.config"


def test_web_configs_of_applications_and_their_other_virtual_directories() -> None:
    parsed = parse_application_host(data("02-farm.applicationHost.config"), "farm")
    root = parsed.applications[0]
    assert root.web_config == r"%SystemDrive%\inetpub\wwwroot\web.config"
    assert root.virtual_dirs == (("/images", r"D:\shared\images"),)
    api = parsed.applications[-1]
    assert api.web_config == r"D:\sites\api\web.config"  # a trailing backslash is not doubled
    assert physical_paths(data("02-farm.applicationHost.config"), "farm") == [
        r"%SystemDrive%\inetpub\wwwroot",
        r"D:\shared\images",
        r"D:\sites\shop",
        r"D:\sites\shop-admin",
        r"%SystemDrive%\legacy",
        r"\\fileserver.example\intranet$\wwwroot",
        r"D:\static",
        "D:\\sites\\api\\",
    ]


def test_protection_providers_and_which_are_used() -> None:
    farm = parse_application_host(data("02-farm.applicationHost.config"), "farm")
    kinds = {p.name: (p.kind, p.key_container) for p in farm.providers}
    assert kinds["IISWASOnlyRsaProvider"] == ("rsa", "iisWasKey")
    assert kinds["AesProvider"] == ("aes", "iisConfigurationKey")
    assert kinds["IISCngProvider"] == ("cng", "iisCngConfigurationKey")
    assert farm.used_providers == ("IISWASOnlyCngProvider",)
    assert farm.cng_in_use() and not farm.rsa_in_use()
    default = parse_application_host(data("01-default.applicationHost.config"), "default")
    assert default.providers == () and not default.rsa_in_use()


@pytest.mark.parametrize(
    ("name", "enabled", "host_path"),
    [
        (
            "03-shared.redirection.config",
            True,
            r"\\fileserver.example\iisconfig$\applicationHost.config",
        ),
        ("04-off.redirection.config", False, APPLICATION_HOST_CONFIG),
        ("05-empty.redirection.config", False, APPLICATION_HOST_CONFIG),
    ],
)
def test_redirection_decides_which_application_host_is_read(
    name: str, enabled: bool, host_path: str
) -> None:
    redirection = parse_redirection(data(name), name)
    assert redirection.enabled is enabled
    assert redirection.application_host == host_path
    assert is_unc(host_path) is enabled


def test_environment_variables_expand_like_windows() -> None:
    env = {"SystemDrive": "C:", "windir": r"C:\Windows"}
    assert expand_env(r"%SYSTEMDRIVE%\inetpub\wwwroot", env) == r"C:\inetpub\wwwroot"
    assert expand_env(r"%windir%\x\%NOPE%", env) == r"C:\Windows\x\%NOPE%"


def test_hostile_or_broken_files_are_refused_not_guessed() -> None:
    with pytest.raises(ConfigFileError, match="DOCTYPE"):
        parse_application_host(b'<!DOCTYPE x [<!ENTITY a "b">]><configuration/>', "evil")
    with pytest.raises(ConfigFileError):
        parse_application_host(b"<configuration><system.applicationHost>", "cut")
    assert physical_paths(b"not xml", "junk") == []
