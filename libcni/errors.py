"""Typed CNI errors: each class owns its spec code and renders the error object."""

from __future__ import annotations

import enum
import json
from typing import Any, ClassVar


class Code(enum.IntEnum):
    """Error codes from the CNI spec (section "Error"), plus our plugin range."""

    INCOMPATIBLE_VERSION = 1
    UNSUPPORTED_FIELD = 2
    UNKNOWN_CONTAINER = 3
    INVALID_ENVIRONMENT = 4
    IO_FAILURE = 5
    DECODING_FAILURE = 6
    INVALID_CONFIG = 7
    TRY_AGAIN_LATER = 11
    NOT_AVAILABLE = 50
    LIMITED_CONNECTIVITY = 51
    # 100 and up are reserved by the spec for plugins.
    ADDRESS_EXHAUSTED = 100
    CONFLICTING_STATE = 101
    BPF_FAILURE = 102
    DELEGATE_FAILURE = 103
    CHECK_FAILED = 104
    KERNEL_FAILURE = 105
    GENERIC = 999


class CniError(Exception):
    """An error the runtime sees: a code, a one-line message and optional details."""

    code: ClassVar[Code] = Code.GENERIC

    def __init__(self, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details

    def to_dict(self, cni_version: str) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "cniVersion": cni_version,
            "code": int(self.code),
            "msg": self.msg,
        }
        if self.details:
            obj["details"] = self.details
        return obj

    def to_json(self, cni_version: str) -> str:
        return json.dumps(self.to_dict(cni_version))


class IncompatibleVersion(CniError):
    code = Code.INCOMPATIBLE_VERSION


class InvalidEnvironment(CniError):
    code = Code.INVALID_ENVIRONMENT


class IOFailure(CniError):
    code = Code.IO_FAILURE


class DecodingFailure(CniError):
    code = Code.DECODING_FAILURE


class InvalidConfig(CniError):
    code = Code.INVALID_CONFIG


class TryAgainLater(CniError):
    code = Code.TRY_AGAIN_LATER


class NotAvailable(CniError):
    code = Code.NOT_AVAILABLE


class LimitedConnectivity(CniError):
    """STATUS/CHECK: pods get connectivity, but not in the way the config asked."""

    code = Code.LIMITED_CONNECTIVITY


class AddressExhausted(CniError):
    code = Code.ADDRESS_EXHAUSTED


class ConflictingState(CniError):
    """The kernel holds an object we would create, in a shape we did not expect."""

    code = Code.CONFLICTING_STATE


class BpfFailure(CniError):
    code = Code.BPF_FAILURE


class KernelFailure(CniError):
    """The kernel refused a change (a netlink, ioctl or sysctl error)."""

    code = Code.KERNEL_FAILURE


class CheckFailed(CniError):
    """CHECK found the attachment's state differing from what ADD made."""

    code = Code.CHECK_FAILED


class DelegateError(CniError):
    """An error reported by a delegated plugin: its own code is passed through."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg, details)
        self.passed_code = code

    def to_dict(self, cni_version: str) -> dict[str, Any]:
        obj = super().to_dict(cni_version)
        obj["code"] = self.passed_code
        return obj


SHOWN_MAX = 200


def shown(value: object) -> str:
    """A value as the runtime wrote it, for a message: JSON (null, true, "x"), not
    Python's repr (None, True, 'x'), and cut short when long."""
    try:
        text = json.dumps(value, ensure_ascii=False)
        # A lone surrogate (JSON "\\ud800") must not reach stdout raw.
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= SHOWN_MAX else text[:SHOWN_MAX] + "..."
