# The types a handler sees (what componentize-py generates as `wit_world` from the WIT
# contract cmq:push@0.2.0, world push-handler-with-config), for an editor's completion
# and type checks.
from dataclasses import dataclass
from enum import Enum
from typing import List, Optional, Tuple, Union

class Format(Enum):
    JSON = 0
    SIMPLIFIED = 1

@dataclass
class Message:
    message_id: str
    request_id: Optional[str]
    tags: List[str]
    topic_owner: Optional[str]
    topic_name: Optional[str]
    subscription_name: Optional[str]
    publish_time: Optional[int]
    body: bytes
    format: Format
    attempt: Optional[int]

@dataclass
class Decision_Ack: ...

@dataclass
class Decision_Retry:
    value: str

@dataclass
class Decision_Drop:
    value: str

Decision = Union[Decision_Ack, Decision_Retry, Decision_Drop]

class store:
    """`from wit_world.imports import store`: the handler's settings, through
    wasi:config/store (`cmq-host --config-var NAME=VALUE`, a route's
    `[routes.NAME.config]`, `wasmtime serve -S config-var=NAME=VALUE`)."""

    @staticmethod
    def get(key: str) -> Optional[str]:
        """The setting `key`, or None when none is given; a store that fails raises
        `componentize_py_types.Err`."""
        ...

    @staticmethod
    def get_all() -> List[Tuple[str, str]]:
        """Every setting, as (name, value) pairs."""
        ...
