"""Tests of {{module}}.py, run with `python3 -m unittest` in this folder, no toolchain:
the handler's decisions on messages built as CMQ pushes them. The `wit_world` bindings
componentize-py generates at build time are stood in for by the names the handler
uses (see `cmq.pyi` for their types); the settings it reads come from `SETTINGS`."""

import contextlib
import io
import sys
import types
import unittest
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class Message:
    """A message as the documented push carries it."""

    message_id: str = "6942316962"
    request_id: Optional[str] = "2394928734"
    tags: list = field(default_factory=list)
    topic_owner: Optional[str] = "100015036"
    topic_name: Optional[str] = "MyTopic"
    subscription_name: Optional[str] = "mysubscription"
    publish_time: Optional[int] = 11203432
    body: bytes = b"test message"
    format: int = 0
    attempt: Optional[int] = None


@dataclass
class Decision_Ack:
    pass


@dataclass
class Decision_Retry:
    value: str


@dataclass
class Decision_Drop:
    value: str


class _Exports(types.ModuleType):
    class Handler:
        pass


_handler = types.ModuleType("wit_world.exports.handler")
for _name, _value in {
    "Message": Message,
    "Decision": object,
    "Decision_Ack": Decision_Ack,
    "Decision_Retry": Decision_Retry,
    "Decision_Drop": Decision_Drop,
}.items():
    setattr(_handler, _name, _value)
_exports = _Exports("wit_world.exports")
_exports.handler = _handler

# The settings `store.get` reads (wasi:config/store, given by the host).
SETTINGS = {}
_store = types.ModuleType("wit_world.imports.store")
_store.get = SETTINGS.get
_imports = types.ModuleType("wit_world.imports")
_imports.store = _store

_world = types.ModuleType("wit_world")
_world.exports = _exports
_world.imports = _imports
sys.modules.update(
    {
        "wit_world": _world,
        "wit_world.exports": _exports,
        "wit_world.exports.handler": _handler,
        "wit_world.imports": _imports,
        "wit_world.imports.store": _store,
    }
)

from {{module}} import Handler  # noqa: E402  (after the stand-ins)


class HandlerTest(unittest.TestCase):
    def test_the_documented_push_is_acknowledged(self):
        self.assertEqual(Handler().handle(Message()), Decision_Ack())

    def test_tags_ask_for_a_retry_or_a_drop(self):
        self.assertEqual(Handler().handle(Message(tags=["retry"])), Decision_Retry("tagged retry"))
        self.assertEqual(Handler().handle(Message(tags=["a", "drop"])), Decision_Drop("tagged drop"))

    def test_the_greeting_is_read_from_the_settings(self):
        for settings, printed in [({}, "hello, message"), ({"greeting": "hi"}, "hi, message")]:
            SETTINGS.clear()
            SETTINGS.update(settings)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                Handler().handle(Message())
            self.assertTrue(out.getvalue().startswith(printed), out.getvalue())
        SETTINGS.clear()


if __name__ == "__main__":
    unittest.main()
