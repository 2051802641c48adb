"""The proof users need: which nodes accept a ticket and a ViewState issued by which node.

Used by ``make demo`` and by the end-to-end tests, so both show the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from farmsync.lab.probe import FormState, check_ticket, fetch_form, issue_ticket, post_form


@dataclass(frozen=True)
class Credentials:
    """What one node issued: a forms-authentication cookie and a page's ViewState."""

    issuer: str
    cookie: str
    form: FormState


@dataclass(frozen=True)
class Acceptance:
    """``tickets[issuer][checker]`` and ``viewstate[issuer][checker]``: accepted or not."""

    tickets: Mapping[str, Mapping[str, bool]]
    viewstate: Mapping[str, Mapping[str, bool]]

    def everywhere(self) -> bool:
        return all(all(row.values()) for m in (self.tickets, self.viewstate) for row in m.values())

    def only_at_home(self) -> bool:
        """Each node accepts its own credentials and rejects every other node's."""
        return all(
            ok == (issuer == checker)
            for m in (self.tickets, self.viewstate)
            for issuer, row in m.items()
            for checker, ok in row.items()
        )


def issue(urls: Mapping[str, str], issuers: Sequence[str] | None = None) -> list[Credentials]:
    names = list(issuers) if issuers is not None else list(urls)
    return [
        Credentials(n, issue_ticket(urls[n], user=f"user-of-{n}"), fetch_form(urls[n]))
        for n in names
    ]


def check(urls: Mapping[str, str], credentials: Sequence[Credentials]) -> Acceptance:
    tickets = {
        c.issuer: {n: check_ticket(u, c.cookie) for n, u in urls.items()} for c in credentials
    }
    viewstate = {c.issuer: {n: post_form(u, c.form) for n, u in urls.items()} for c in credentials}
    return Acceptance(tickets, viewstate)


def cross_check(urls: Mapping[str, str], issuers: Sequence[str] | None = None) -> Acceptance:
    """Issue on each issuer (default: every node) and check on every node."""
    return check(urls, issue(urls, issuers))
