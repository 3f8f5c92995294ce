"""Drives Pulsar's MCP server with the official Python client, as an agent would.

Usage: drive.py URL TOKEN WORKSPACE_ID MODE PLAN_JSON

MODE is `v1` (PyPI `mcp` 1.x, the initialize handshake), `v2-legacy` (2.x forced to the
handshake) or `v2-auto` (2.x as it connects by default: `server/discover` under
2026-07-28). PLAN_JSON is a list of steps:
  {"op": "list_tools"} | {"op": "call", "name": ..., "args": {...}}
  {"op": "list_resources"} | {"op": "list_templates"} | {"op": "read", "uri": ...}
  {"op": "list_prompts"} | {"op": "prompt", "name": ..., "args": {...}}

Prints one JSON object: the negotiated protocol version and one result per step
(the client's result as JSON, or {"exception": ...}). Every successful tool result's
structuredContent is checked against the tool's outputSchema with `jsonschema`
(Draft 2020-12); a mismatch is reported as the step's `schema_error`.
"""

import asyncio
import json
import sys

import jsonschema


def dump(model):
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


async def all_pages(fetch, key):
    items, cursor = [], None
    while True:
        page = dump(await fetch(cursor))
        items.extend(page.get(key, []))
        cursor = page.get("nextCursor")
        if not cursor:
            return items


class Driver:
    def __init__(self, session, v2):
        self.session = session
        self.v2 = v2
        self.schemas = None

    async def list_tools(self):
        fetch = (lambda c: self.session.list_tools(cursor=c)) if self.v2 else (
            lambda c: self.session.list_tools(cursor=c))
        tools = await all_pages(fetch, "tools")
        self.schemas = {t["name"]: t.get("outputSchema") for t in tools}
        return {"tools": tools}

    async def step(self, step):
        op = step["op"]
        if op == "list_tools":
            return await self.list_tools()
        if op == "call":
            if self.schemas is None:
                await self.list_tools()
            result = dump(await self.session.call_tool(step["name"], step.get("args", {})))
            out = {"result": result}
            structured = result.get("structuredContent")
            if not result.get("isError"):
                name = step["name"].replace(".", "_", 1)
                schema = self.schemas.get(name)
                if schema is None or structured is None:
                    out["schema_error"] = "no outputSchema or no structuredContent"
                else:
                    try:
                        jsonschema.Draft202012Validator.check_schema(schema)
                        jsonschema.Draft202012Validator(schema).validate(structured)
                        out["schema_valid"] = True
                    except jsonschema.exceptions.SchemaError as e:
                        out["schema_error"] = f"bad schema: {e.message}"
                    except jsonschema.ValidationError as e:
                        out["schema_error"] = f"{e.message} at {list(e.absolute_path)}"
                if structured is not None:
                    texts = [c.get("text") for c in result.get("content", []) if c.get("type") == "text"]
                    out["text_matches"] = any(
                        t is not None and json.loads(t) == structured for t in texts)
            return out
        if op == "list_resources":
            return {"resources": await all_pages(lambda c: self.session.list_resources(cursor=c), "resources")}
        if op == "list_templates":
            return {"templates": await all_pages(
                lambda c: self.session.list_resource_templates(cursor=c), "resourceTemplates")}
        if op == "read":
            return {"result": dump(await self.session.read_resource(step["uri"]))}
        if op == "list_prompts":
            return {"prompts": await all_pages(lambda c: self.session.list_prompts(cursor=c), "prompts")}
        if op == "prompt":
            return {"result": dump(await self.session.get_prompt(step["name"], step.get("args", {})))}
        raise ValueError(f"unknown op {op}")

    async def run(self, plan):
        results = []
        for step in plan:
            try:
                results.append(await self.step(step))
            except Exception as e:  # the step's failure is the test's to judge
                results.append({"exception": f"{type(e).__name__}: {e}"})
        return results


async def main():
    url, token, workspace, mode, plan = sys.argv[1:6]
    plan = json.loads(plan)
    headers = {"Authorization": f"Bearer {token}", "X-Workspace-ID": workspace}
    if mode == "v1":
        import httpx
        from mcp import ClientSession
        from mcp.client.streamable_http import streamable_http_client

        async with httpx.AsyncClient(headers=headers, timeout=30) as http:
            async with streamable_http_client(url, http_client=http) as (read, write, _):
                async with ClientSession(read, write) as session:
                    init = await session.initialize()
                    results = await Driver(session, False).run(plan)
                    version = init.protocolVersion
    else:
        import httpx2
        from mcp.client import Client
        from mcp.client.streamable_http import streamable_http_client

        connect = "legacy" if mode == "v2-legacy" else "auto"
        async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
            transport = streamable_http_client(url, http_client=http)
            async with Client(transport, mode=connect) as client:
                results = await Driver(client, True).run(plan)
                version = client.protocol_version
    print(json.dumps({"protocol_version": version, "results": results}))


if __name__ == "__main__":
    asyncio.run(main())
