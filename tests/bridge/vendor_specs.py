"""Validate requests the bridge sent (as the desk simulator captured them) against the vendors' API descriptions.

The descriptions are ``reference/desk-specs/`` beside the shared design (SOURCES.md there says where each
came from). Every captured request is either covered by one of them — and must then be valid, path,
query and body — or matches one of :data:`UNCOVERED`, the calls the subsets leave out, each listed with
its reason. A request that is neither fails the test, so a new call cannot slip past unvalidated.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.validation.request.validators import V30RequestBodyValidator, V30RequestParametersValidator
from werkzeug.datastructures import Headers, ImmutableMultiDict

SPECS = Path(__file__).resolve().parents[3] / "shared" / "reference" / "desk-specs"
if not SPECS.is_dir():  # CI lays shared/ beside the clone; a worktree has it one level further up
    SPECS = Path(__file__).resolve().parents[4] / "shared" / "reference" / "desk-specs"

SPEC_FILES = {
    "pagerduty": ("pagerduty-events-v2.openapi.json",),
    "zendesk": ("zendesk-support.openapi.subset.json",),
    "jsm": ("jsm-servicedeskapi.openapi.subset.json", "jira-platform-v3.openapi.subset.json"),
    "servicenow": ("servicenow-table-api.handwritten.openapi.json",),
}

UNCOVERED: dict[str, tuple[tuple[str, str, str], ...]] = {
    "webhook": (("POST", r"/webhook", "our own contract (Standard Webhooks), docs/bridge.md"),),
    "zendesk": (
        ("GET", r"/api/v2/tickets\.json", "list by external_id: not in the subset"),
        ("GET", r"/api/v2/tickets/\d+/comments\.json", "comments: not in the subset"),
        ("GET", r"/api/v2/users/(me|search)\.json", "users: not in the subset"),
        ("POST", r"/api/v2/users/create_or_update\.json", "users: not in the subset"),
        ("POST", r"/api/v2/uploads\.json", "uploads: not in the subset"),
        ("GET", r"/api/v2/incremental/ticket_events\.json", "incremental export: not in the subset"),
    ),
    "jsm": (
        ("GET", r"/rest/servicedeskapi/request/[\w-]+/comment", "comment list: not in the subset"),
        ("GET", r"/rest/servicedeskapi/servicedesk/\w+/requesttype/\w+/field", "request type fields: not in it"),
        ("POST", r"/rest/servicedeskapi/servicedesk/\w+/customer", "desk customers: not in the subset"),
        ("POST", r"/rest/servicedeskapi/servicedesk/\w+/attachTemporaryFile", "attachments: not in the subset"),
        ("POST", r"/rest/servicedeskapi/request/[\w-]+/attachment", "attachments: not in the subset"),
        ("POST", r"/rest/servicedeskapi/customer", "customers: not in the subset"),
        ("GET", r"/rest/api/3/(user/search|myself|search/jql)", "platform users and search: not in the subset"),
    ),
    "servicenow": (
        ("POST", r"/api/now/attachment/file", "Attachment API: not in the hand-written Table API description"),
        ("GET", r"/api/now/attachment", "Attachment API: not in the hand-written Table API description"),
    ),
    "pagerduty": (),
}


@dataclass
class _Captured:
    """A captured request in the shape openapi-core's Request protocol reads."""

    host_url: str
    path: str
    method: str
    parameters: RequestParameters
    content_type: str
    body: bytes | None

    @property
    def full_url_pattern(self) -> str:
        return self.host_url + self.path


@cache
def _openapi(file: str) -> tuple[tuple[OpenAPI, OpenAPI], str]:
    """Parameter and body validators of one description (security is the simulator's own check:
    credentials are not captured), and its server's scheme and host."""
    spec = json.loads((SPECS / file).read_text(encoding="utf-8"))
    server = spec["servers"][0]
    url = server["url"]
    for name, var in server.get("variables", {}).items():
        url = url.replace("{" + name + "}", var["default"])
    parts = urlsplit(url)
    # spec_validator_cls=None: the descriptions are references, not ours to lint (the hand-written
    # ServiceNow one leaves out ``responses``); what is checked is each request against them.
    apis = tuple(OpenAPI.from_dict(spec, config=Config(request_validator_cls=cls, spec_validator_cls=None))
                 for cls in (V30RequestParametersValidator, V30RequestBodyValidator))
    return (apis[0], apis[1]), f"{parts.scheme}://{parts.netloc}"


def _uncovered(desk: str, method: str, path: str) -> bool:
    return any(m == method and re.fullmatch(p, path) for m, p, _why in UNCOVERED.get(desk, ()))


def problems(desk: str, captured: list[dict[str, Any]]) -> list[str]:
    """Why each captured request of ``desk`` is invalid or unaccounted for (empty: all good)."""
    out: list[str] = []
    for entry in captured:
        if entry.get("desk") != desk or entry["path"].startswith("/_sim/"):
            continue
        method, path = entry["method"], entry["path"]
        if _uncovered(desk, method, path):
            continue
        if entry.get("body_truncated"):
            out.append(f"{method} {path}: body longer than the simulator logs; cannot validate")
            continue
        errors: list[str] = []
        for file in SPEC_FILES.get(desk, ()):
            apis, host = _openapi(file)
            body = entry.get("body")
            request = _Captured(
                host_url=host, path=path, method=method.lower(),
                parameters=RequestParameters(query=ImmutableMultiDict(
                    [(k, v) for k, vs in entry.get("query", {}).items() for v in vs]),
                    header=Headers({"Content-Type": entry.get("content_type") or "application/json"})),
                content_type=(entry.get("content_type") or "application/json").lower(),
                body=None if body in (None, "") else body.encode(),
            )
            try:
                with warnings.catch_warnings():
                    # Atlassian's descriptions declare OAuth schemes openapi-core does not model; not checked here.
                    warnings.filterwarnings("ignore", "Unsupported scheme type", UserWarning)
                    for api in apis:
                        api.validate_request(request)
            except Exception as exc:  # openapi-core raises a family of its own errors; each is a finding here
                errors.append(f"{file}: {type(exc).__name__}: {exc}"[:600] + _cause(exc))
                continue
            errors = []
            break
        if errors:
            out.append(f"{method} {path}: " + " | ".join(errors))
    return out


def _cause(exc: BaseException) -> str:
    inner = getattr(exc, "schema_errors", None) or getattr(exc.__cause__, "schema_errors", None)
    if inner:
        return " — " + "; ".join(str(e.message)[:200] for e in inner)[:600]
    return f" — {exc.__cause__}"[:400] if exc.__cause__ else ""
