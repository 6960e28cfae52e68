"""{{name}}: decides what CMQ is told about each message it pushes."""

from wit_world import exports
from wit_world.exports.handler import (
    Decision,
    Decision_Ack,
    Decision_Drop,
    Decision_Retry,
    Message,
)
from wit_world.imports import store


class Handler(exports.Handler):
    def handle(self, msg: Message) -> Decision:
        # A message that can never be handled is dropped (and kept in the host's
        # dead-letter journal); one that may be handled later is retried. An exception
        # traps the instance: the host answers 500 and CMQ redelivers.
        if "drop" in msg.tags:
            return Decision_Drop("tagged drop")
        if "retry" in msg.tags:
            return Decision_Retry("tagged retry")
        # A setting, through wasi:config/store: `cmq-host --config-var greeting=hi`, a
        # route's [routes.NAME.config], `wasmtime serve -S config-var=greeting=hi`;
        # None when none is given (an empty one counts as none, as Spin gives every
        # variable a value).
        greeting = store.get("greeting") or "hello"
        print(f"{greeting}, message {msg.message_id}: {msg.body.decode('utf-8', 'replace')}")
        return Decision_Ack()
