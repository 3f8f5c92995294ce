"""Schemathesis hooks for Pulsar: what a real client knows that a schema cannot say.

A JSON Schema describes one request in isolation. Some of Pulsar's rules depend on state:
a task's `project_id` must name a project of the caller's workspace, a member must be a
user who signed up, an expiry must lie in the future, and the workspace a request names
must be one the caller belongs to. `run.py` creates that state and passes it here; this
hook puts it into generated requests where the generated value is *schema-valid*, so
positive cases become requests a real client could send, and negative cases stay
negative (a value that breaks the schema is never touched).
"""

import itertools
import json
import os
import re
from datetime import datetime, timedelta, timezone

import schemathesis

STATE = json.loads(os.environ.get("PULSAR_ST_STATE", "{}"))

# Reference fields and the id of a live record of the right kind.
REFERENCES = {
    "project_id": ("proj", STATE.get("project_id")),
    "company_id": ("comp", STATE.get("company_id")),
    "contact_id": ("cont", STATE.get("contact_id")),
    "owner_id": ("usr", STATE.get("user_id")),
    "assignee_id": ("usr", STATE.get("user_id")),
}
EXPIRY_FIELDS = ("expires_at",)
# Emails and slugs must be free: each schema-valid one is made unique.
UNIQUE = itertools.count()
SLUG = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")


def _is_id(prefix, value):
    return isinstance(value, str) and re.fullmatch(prefix + r"_[0-9a-f]{32}", value) is not None


def _is_datetime(value):
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
        return True
    except ValueError:
        return False


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    body = case.body
    if isinstance(body, dict):
        for field, (prefix, live) in REFERENCES.items():
            if live and _is_id(prefix, body.get(field)):
                body[field] = live
        for field in EXPIRY_FIELDS:
            if _is_datetime(body.get(field)):
                body[field] = (datetime.now(timezone.utc) + timedelta(days=30)).isoformat()
        path = case.operation.path
        email = body.get("email")
        if isinstance(email, str) and "@" in email:
            if path == "/workspaces/{id}/members":
                # Members are users who signed up.
                body["email"] = STATE.get("member_email", email)
            elif path == "/auth/signup":
                local, domain = email.rsplit("@", 1)
                body["email"] = f"{local}+{next(UNIQUE)}@{domain}"
        slug = body.get("slug")
        if isinstance(slug, str) and SLUG.fullmatch(slug) and len(slug) < 56:
            body["slug"] = f"{slug}-{next(UNIQUE)}"
    workspace = STATE.get("workspace_id")
    if workspace:
        if case.query and _is_id("ws", case.query.get("workspaceId")):
            case.query["workspaceId"] = workspace
        if case.headers and _is_id("ws", case.headers.get("X-Workspace-ID")):
            case.headers["X-Workspace-ID"] = workspace
    return None
