#!/usr/bin/env python3
"""Runs schemathesis against a real `pulsar serve` and its OpenAPI document.

    pip install schemathesis
    cargo build --bin pulsar
    tests/schemathesis/run.py [--max-examples N] [extra `st run` arguments...]

It starts the server on a free port with a throwaway embedded PostgreSQL, signs up an
owner and a second user, creates a project, a company and a contact (the state that
`hooks.py` puts into generated requests), runs every phase but `stateful` with all
checks as the owner, then stops the server. Exit status is schemathesis's.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base, method, path, body=None, token=None):
    request = urllib.request.Request(base + path, method=method)
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(request, data) as response:
        return json.loads(response.read())


def main():
    args = sys.argv[1:]
    max_examples = "100"
    if "--max-examples" in args:
        i = args.index("--max-examples")
        max_examples = args[i + 1]
        del args[i : i + 2]
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="pulsar-st-")
    os.chmod(data_dir, 0o777)
    env = dict(
        os.environ,
        PULSAR_LISTEN=f"127.0.0.1:{port}",
        PULSAR_DATA_DIR=os.path.join(data_dir, "data"),
        PULSAR_RATE_LIMIT_SCALE="1000",
    )
    env.pop("DATABASE_URL", None)
    binary = os.path.join(ROOT, "target", "debug", "pulsar")
    server = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        base = f"http://127.0.0.1:{port}/api/v1"
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    sys.exit("pulsar did not start")
                time.sleep(0.2)
        password = "correct horse battery staple"
        owner = call(base, "POST", "/auth/signup", {"email": "owner@st.example", "password": password, "workspace_name": "Schemathesis"})
        member = call(base, "POST", "/auth/signup", {"email": "member@st.example", "password": password, "workspace_name": "Other"})
        token = owner["token"]
        state = {
            "workspace_id": owner["primaryWorkspace"]["id"],
            "user_id": owner["principal"]["id"],
            "member_email": member["principal"]["email"],
            "project_id": call(base, "POST", "/projects", {"name": "Fixture"}, token)["data"]["id"],
            "company_id": call(base, "POST", "/companies", {"name": "Fixture Ltd"}, token)["data"]["id"],
        }
        state["contact_id"] = call(base, "POST", "/contacts", {"name": "Fixture", "company_id": state["company_id"]}, token)["data"]["id"]
        st_env = dict(
            os.environ,
            PULSAR_ST_STATE=json.dumps(state),
            SCHEMATHESIS_HOOKS="hooks",
            PYTHONPATH=os.path.dirname(os.path.abspath(__file__)),
        )
        command = [
            shutil.which("st") or "st", "run", f"{base}/openapi.json",
            "--url", base,
            "-H", f"Authorization: Bearer {token}",
            # Logging out would end the session every other case uses.
            "--exclude-path", "/auth/logout",
            "--max-examples", max_examples,
            "--phases", "examples,coverage,fuzzing",
            "--checks", "all",
            "--workers", "2",
            *args,
        ]
        print("$", " ".join(c if "Bearer" not in c else "Authorization: Bearer $TOKEN" for c in command), flush=True)
        return subprocess.call(command, env=st_env)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
