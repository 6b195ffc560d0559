"""The private members of aiosmtpd that vmta overrides or uses (smtp/listener.py,
smtp/chunked_data.py, smtp/sasl_exchange.py) still exist, with the signatures vmta was
written against. aiosmtpd is pinned to 1.4.x for this reason (pyproject.toml,
docs/architecture.md "aiosmtpd"); this test is what fails first when a new release
moves one of them, before a session misbehaves."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import aiosmtpd
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword

# name -> the parameters (after self) vmta calls or overrides it with
METHODS = {
    "_reset_timeout": ["duration"],  # InjectionSMTP: a moved deadline instead of a timer
    "_timeout_cb": [],  # called when the idle deadline has passed
    "_getaddr": ["arg"],  # InjectionSMTP: the plain path without aiosmtpd's parser
    "_set_post_data_state": [],  # ChunkedDataSMTP: the state after DATA
    "_call_handler_hook": ["command", "args"],  # ChunkedDataSMTP: the DATA hook
    "challenge_auth": ["challenge", "encode_to_b64", "log_client_response"],
    "check_helo_needed": ["helo"],
    "check_auth_needed": ["caller_method"],
    "auth_PLAIN": ["_", "args"],
    "auth_LOGIN": ["_", "args"],
    "smtp_DATA": ["arg"],
    "smtp_MAIL": ["arg"],
    "smtp_RCPT": ["arg"],
    "smtp_AUTH": ["arg"],
}
# set by SMTP.__init__
ATTRIBUTES = (
    "_timeout_handle",
    "_auth_require_tls",  # InjectionSMTP: AUTH without TLS for loopback clients
    "local_part_limit",
    "line_length_limit",
    "data_size_limit",
    "AuthLoginUsernameChallenge",
    "AuthLoginPasswordChallenge",
)
# set by SMTP.connection_made: ChunkedDataSMTP reads DATA from the reader itself
CONNECTION_ATTRIBUTES = ("_reader", "_writer")


def test_the_pinned_series_is_installed() -> None:
    assert aiosmtpd.__version__.startswith("1.4."), aiosmtpd.__version__


def test_overridden_methods_keep_their_signatures() -> None:
    for name, wanted in METHODS.items():
        method = getattr(SMTP, name, None)
        assert callable(method), f"aiosmtpd's SMTP has no {name} any more"
        params = list(inspect.signature(method).parameters)[1:]
        assert params == wanted, (name, params)
    assert AuthResult(success=True).success and LoginPassword(b"a", b"b").login == b"a"
    assert MISSING is not None


async def test_attributes_exist_on_a_live_session() -> None:
    sessions: list[SMTP] = []

    class Handler:
        pass

    def factory() -> SMTP:
        session = SMTP(Handler())
        sessions.append(session)
        return session

    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        greeting = await asyncio.wait_for(reader.readline(), 10)
        assert greeting.startswith(b"220 ")
        (session,) = sessions
        missing = [a for a in (*ATTRIBUTES, *CONNECTION_ATTRIBUTES) if not hasattr(session, a)]
        assert missing == []
        stream: Any = session._reader
        assert isinstance(stream._limit, int)  # asyncio's, raised while DATA is read
        writer.close()
        await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
