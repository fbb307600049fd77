"""What a setting may show and where a listener may bind: secrets masked by name and inside
connection URLs, loopback told from exposed hosts."""

from __future__ import annotations

import ipaddress
import re

SECRET_WORDS = ("secret", "credential", "password")
SECRET_VALUES = ("alert_webhook_url",)  # the URL is the credential (Slack and the like)
SECRET_URL_PASSWORDS = ("catalog_uri", "airflow_db_uri", "spark_connect")  # URLs that may carry a password or token


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps a listener on this machine."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a host name: only its resolution could tell; treat it as exposed
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1, as a JVM reports IPv4 sockets
    return (mapped or address).is_loopback


def mask_secret(key: str, shown: str) -> str:
    """A setting's value as it may be printed: secrets by name and whole secret URLs masked, and
    the password inside a connection URL (``postgresql://user:****@host/db``)."""
    if not shown:
        return shown
    if key in SECRET_VALUES or any(word in key for word in SECRET_WORDS):
        return "****"
    if key in SECRET_URL_PASSWORDS:
        return mask_url_password(shown)
    return shown


def mask_url_password(url: str) -> str:
    """``scheme://user:secret@host/...`` -> ``scheme://user:****@host/...``; also ``?password=...``."""
    # up to the authority's last "@": a password may hold one its writer did not percent-encode
    url = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*):[^/]*@", r"\1:****@", url)
    return re.sub(r"([?&;](?:password|passwd|pwd|token|secret|credential)[^=&;]*=)[^&;]*", r"\1****", url, flags=re.I)


def url_secrets(url: str) -> list[str]:
    """The password or token values inside a connection URL (what mask_url_password hides)."""
    found = re.findall(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@:]*:([^/]*)@", url)
    found += re.findall(r"[?&;](?:password|passwd|pwd|token|secret|credential)[^=&;]*=([^&;]*)", url, flags=re.I)
    return [f for f in found if f]
