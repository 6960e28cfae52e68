"""Decides by tag, as the Rust `by-tag` example does: tag `retry` asks CMQ to
redeliver, tag `drop` drops the message, anything else acks."""

from wit_world import exports
from wit_world.exports.handler import (
    Decision,
    Decision_Ack,
    Decision_Drop,
    Decision_Retry,
    Message,
)


class Handler(exports.Handler):
    def handle(self, msg: Message) -> Decision:
        if "retry" in msg.tags:
            return Decision_Retry("tagged retry")
        if "drop" in msg.tags:
            return Decision_Drop("tagged drop")
        return Decision_Ack()
