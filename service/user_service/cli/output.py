"""JSON output of the CLI: messages in the canonical proto3 JSON mapping."""

from __future__ import annotations

import json
import sys

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def print_message(message: Message) -> None:
    print(json.dumps(MessageToDict(message, preserving_proto_field_name=True)), flush=True)


def print_rpc_error(error: grpc.aio.AioRpcError) -> None:
    """The status as JSON on stderr, with google.rpc.BadRequest field violations if any."""
    report: dict[str, object] = {"code": error.code().name, "message": error.details()}
    status = rpc_status.from_call(error)
    violations = []
    for detail in status.details if status else ():
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            violations += [
                {"field": v.field, "description": v.description} for v in bad_request.field_violations
            ]
    if violations:
        report["field_violations"] = violations
    print(json.dumps({"error": report}), file=sys.stderr, flush=True)
