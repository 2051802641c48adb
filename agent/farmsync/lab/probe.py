"""HTTP client proving what a lab farm's keys do: tickets and ViewState across nodes.

The proof users need is not that the XML matches but that a forms-authentication ticket or
a ViewState issued by one node is accepted by every other node (and rejected where keys
differ). These calls talk to the lab application's pages:

``login.axd?user=U``  issues a forms ticket (encrypted and signed: protection="All")
``check.axd``         200 "accepted U" when the node can decrypt and validate the ticket
``Form.aspx``         a server form; its postback passes only if the ViewState MAC validates

Plain HTTP on loopback via http.client (no redirects followed, every Set-Cookie kept).
"""

from __future__ import annotations

import http.client
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser

from farmsync.errors import FarmsyncError

DEFAULT_TIMEOUT = 15.0
FORM_PAGE = "Form.aspx"
ACCEPTED_MARK = "postback-accepted"
# What System.Web on Mono says when a posted ViewState's MAC does not validate (and what
# Microsoft's does), as shown with customErrors off.
MAC_FAILURE_MARKS = (
    "Unable to validate data",
    "Validation of viewstate MAC failed",
    "The state information is invalid for this page",
)
STATE_FIELDS = ("__VIEWSTATE", "__VIEWSTATEGENERATOR", "__EVENTVALIDATION")


class ProbeError(FarmsyncError):
    """A lab page answered something that is neither acceptance nor a key rejection."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: str

    def header_values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def summary(self) -> str:
        """Status and what kind of answer it was, for error messages.

        A server error shows only the exception's type: its message may quote configuration.
        """
        if self.status >= 500:
            found = re.search(r"\b(?:System|Mono)\.[\w.]*(?:Exception|Error)\b", self.body)
            return f"HTTP {self.status}: {found.group(0) if found else 'server error'}"
        text = " ".join(
            re.sub(r"(?s)<style.*?</style>|<script.*?</script>|<[^>]+>", " ", self.body).split()
        )[:120]
        return f"HTTP {self.status}: {text}"


@dataclass(frozen=True)
class FormState:
    """The hidden state fields of a fetched Form.aspx (ViewState and friends)."""

    page_url: str
    fields: Mapping[str, str] = field(repr=False)

    @property
    def viewstate(self) -> str:
        return self.fields.get("__VIEWSTATE", "")

    @property
    def viewstate_generator(self) -> str | None:
        return self.fields.get("__VIEWSTATEGENERATOR")

    @property
    def event_validation(self) -> str | None:
        return self.fields.get("__EVENTVALIDATION")

    def __repr__(self) -> str:
        present = ", ".join(name for name in STATE_FIELDS if name in self.fields)
        return f"FormState({self.page_url!r}, fields=[{present}])"


def _split(base_url: str, page: str) -> tuple[str, int, str]:
    url = urllib.parse.urljoin(base_url if base_url.endswith("/") else base_url + "/", page)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None:
        raise ProbeError(f"lab URLs are plain http://host:port/, got {base_url!r}")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, parts.port or 80, path


def request(
    base_url: str,
    page: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Response:
    """One HTTP request to a lab node; ProbeError when the node cannot be reached."""
    host, port, path = _split(base_url, page)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        raw = conn.getresponse()
        data = raw.read()
        return Response(raw.status, tuple(raw.getheaders()), data.decode("utf-8", "replace"))
    except OSError as e:
        raise ProbeError(f"cannot reach {base_url}{page}: {e}") from None
    finally:
        conn.close()


def health(base_url: str, timeout: float = 2.0) -> str:
    """ "ok"; "config-error TYPE" when System.Web cannot use the node's machineKey (its ping
    page round-trips a ticket); "unreachable" when nothing answers as the lab app does."""
    try:
        response = request(base_url, "ping.axd", timeout=timeout)
    except ProbeError:
        return "unreachable"
    if response.status == 200 and response.body.startswith("farmsync-lab ok"):
        return "ok"
    if response.status == 500 and response.body.startswith("farmsync-lab config-error "):
        return response.body.split(maxsplit=1)[1].strip()
    return "unreachable"


def ping(base_url: str, timeout: float = 2.0) -> bool:
    """The node answers its ping page through System.Web with a usable machineKey."""
    return health(base_url, timeout) == "ok"


def issue_ticket(base_url: str, user: str = "alice", timeout: float = DEFAULT_TIMEOUT) -> str:
    """Log ``user`` in on a node; returns its forms-authentication cookie as "NAME=VALUE"."""
    query = urllib.parse.urlencode({"user": user})
    response = request(base_url, f"login.axd?{query}", timeout=timeout)
    if response.status != 200 or not response.body.startswith("issued "):
        raise ProbeError(f"{base_url}: login failed: {response.summary()}")
    cookie_name = response.body.split()[1]
    for header in response.header_values("Set-Cookie"):
        pair = header.split(";", 1)[0].strip()
        name, _, value = pair.partition("=")
        if name == cookie_name and value:
            return pair
    raise ProbeError(f"{base_url}: login answered without a {cookie_name} cookie")


def check_ticket(base_url: str, cookie: str, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """True when the node accepts the ticket, False when it rejects it."""
    response = request(base_url, "check.axd", headers={"Cookie": cookie}, timeout=timeout)
    if response.status == 200 and response.body.startswith("accepted "):
        return True
    if response.status == 403 and response.body.startswith("rejected"):
        return False
    raise ProbeError(f"{base_url}: unexpected ticket check answer: {response.summary()}")


class _HiddenInputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "input":
            return
        values = dict(attrs)
        name = values.get("name")
        if (values.get("type") or "").lower() == "hidden" and name:
            self.fields[name] = values.get("value") or ""


def fetch_form(base_url: str, timeout: float = DEFAULT_TIMEOUT) -> FormState:
    """GET Form.aspx; returns its hidden state fields (__VIEWSTATE, ... when present)."""
    response = request(base_url, FORM_PAGE, timeout=timeout)
    if response.status != 200:
        raise ProbeError(f"{base_url}: cannot fetch {FORM_PAGE}: {response.summary()}")
    parser = _HiddenInputs()
    parser.feed(response.body)
    if "__VIEWSTATE" not in parser.fields:
        raise ProbeError(f"{base_url}: {FORM_PAGE} has no __VIEWSTATE field")
    return FormState(base_url, parser.fields)


def post_form(base_url: str, form: FormState, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Post ``form`` back (clicking its button) to a node.

    True when the postback is accepted (ViewState MAC valid and the state read back), False
    when the node rejects the ViewState's MAC; ProbeError for any other answer.
    """
    fields = dict(form.fields)
    fields.update({"Name": "farmsync", "Go": "Go"})
    body = urllib.parse.urlencode(fields).encode("ascii")
    response = request(
        base_url,
        FORM_PAGE,
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        body=body,
        timeout=timeout,
    )
    if response.status == 200 and ACCEPTED_MARK in response.body:
        return True
    if response.status == 500 and any(mark in response.body for mark in MAC_FAILURE_MARKS):
        return False
    raise ProbeError(f"{base_url}: unexpected postback answer: {response.summary()}")
