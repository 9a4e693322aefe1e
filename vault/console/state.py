"""What the console keeps beside VaultState: its session store and the key that checks
access-log anchors (for the chain verification on the access-log page)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from vault.services.access_anchor import AnchorKeys
from vault.services.console_sessions import SessionStore


@dataclass
class ConsoleState:
    sessions: SessionStore
    anchor_keys: AnchorKeys


def console_state(request: Request) -> ConsoleState:
    state: ConsoleState = request.app.state.console
    return state
