"""The receiver from CMQ's HTTP subscription documentation (a Python sample there), as
a handler: print what arrived, then acknowledge it. Prints what the Rust `log-ack`
example prints, line for line."""

from typing import Optional

from wit_world import exports
from wit_world.exports.handler import Decision, Decision_Ack, Format, Message


def or_none(value: Optional[str]) -> str:
    return "-" if value is None else value


class Handler(exports.Handler):
    def handle(self, msg: Message) -> Decision:
        print(f"message id: {msg.message_id}")
        print(f"request id: {or_none(msg.request_id)}")
        print(f"tags: {', '.join(msg.tags)}")
        print(f"topic owner: {or_none(msg.topic_owner)}")
        print(f"topic name: {or_none(msg.topic_name)}")
        print(f"subscription: {or_none(msg.subscription_name)}")
        print(f"publish time: {'-' if msg.publish_time is None else msg.publish_time}")
        print(f"format: {'Json' if msg.format == Format.JSON else 'Simplified'}")
        body = bytes(msg.body)
        try:
            print(f"body ({len(body)} bytes): {body.decode('utf-8')}")
        except UnicodeDecodeError:
            # SIMPLIFIED pushes carry the raw body, which need not be text.
            print(f"body ({len(body)} bytes, not UTF-8): {body.hex()}")
        return Decision_Ack()
