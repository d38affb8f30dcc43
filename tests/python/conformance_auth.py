"""Users and permissions through MLflow's own clients (issue 13).

Drives a server started with `--app-name basic-auth` (keel or mlflow) with
`mlflow.server.get_app_client("basic-auth", uri)` and `MlflowClient` under
MLFLOW_TRACKING_USERNAME/PASSWORD, and checks MLflow's semantics: users
create/get/update/delete, per-user grants on experiments and registered
models, the creator's MANAGE, default_permission (READ), 401 with
WWW-Authenticate, 403 PERMISSION_DENIED, a READ user's write changes
nothing. `--target keel` adds keel's own rules (tokens, the permission
named in the 403, query-string credentials refused).

    MLFLOW_TRACKING_URI=http://127.0.0.1:5000 ADMIN_PASSWORD=... \
        python conformance_auth.py --target keel
"""

import argparse
import os
import sys
import uuid

import mlflow
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.server import get_app_client

URI = os.environ["MLFLOW_TRACKING_URI"]
ADMIN = os.environ.get("ADMIN_USERNAME", "admin")
ADMIN_PASSWORD = os.environ["ADMIN_PASSWORD"]
PASSWORD = "a-long-enough-password"
SUFFIX = uuid.uuid4().hex[:8]
checks = 0


def as_user(username, password):
    os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    os.environ["MLFLOW_TRACKING_USERNAME"] = username
    os.environ["MLFLOW_TRACKING_PASSWORD"] = password


def as_token(token):
    os.environ.pop("MLFLOW_TRACKING_USERNAME", None)
    os.environ.pop("MLFLOW_TRACKING_PASSWORD", None)
    os.environ["MLFLOW_TRACKING_TOKEN"] = token


def check(condition, what):
    global checks
    if not condition:
        raise AssertionError(what)
    checks += 1


def fails(code, call, what, needs=None):
    """`call` must raise an MlflowException with `code` (and name `needs`)."""
    try:
        call()
    except MlflowException as e:
        check(e.error_code == code, f"{what}: expected {code}, got {e.error_code}: {e}")
        if needs is not None:
            check(needs in str(e), f"{what}: the message should name {needs}: {e}")
        return e
    raise AssertionError(f"{what}: expected {code}, the call succeeded")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", choices=["keel", "mlflow"], default="keel")
    target = parser.parse_args().target
    keel = target == "keel"
    mlflow.set_tracking_uri(URI)
    client = MlflowClient(URI)
    auth = get_app_client("basic-auth", tracking_uri=URI)

    # -- No credentials, wrong password, unknown user: the same 401.
    anonymous = requests.get(f"{URI}/api/2.0/mlflow/experiments/get?experiment_id=0", timeout=30)
    check(anonymous.status_code == 401, f"no credentials: {anonymous.status_code}")
    check(
        anonymous.headers.get("WWW-Authenticate", "").lower().startswith("basic"),
        f"401 carries a basic challenge: {anonymous.headers}",
    )
    wrong = requests.get(
        f"{URI}/api/2.0/mlflow/experiments/get?experiment_id=0",
        auth=(ADMIN, ADMIN_PASSWORD + "x"),
        timeout=30,
    )
    unknown = requests.get(
        f"{URI}/api/2.0/mlflow/experiments/get?experiment_id=0",
        auth=(f"nobody-{SUFFIX}", ADMIN_PASSWORD),
        timeout=30,
    )
    check(wrong.status_code == unknown.status_code == 401, "wrong password and unknown user: 401")
    check(wrong.text == unknown.text, "wrong password and unknown user: the same body")

    # -- Users (admin).
    as_user(ADMIN, ADMIN_PASSWORD)
    reader, editor = f"reader-{SUFFIX}", f"editor-{SUFFIX}"
    fails("INVALID_PARAMETER_VALUE", lambda: auth.create_user(reader, "short"), "short password")
    user = auth.create_user(reader, PASSWORD)
    check(user.username == reader and not user.is_admin, f"created {user.username}")
    auth.create_user(editor, PASSWORD)
    fails("RESOURCE_ALREADY_EXISTS", lambda: auth.create_user(reader, PASSWORD), "duplicate user")
    check(auth.get_user(editor).username == editor, "get_user")
    fails("RESOURCE_DOES_NOT_EXIST", lambda: auth.get_user(f"ghost-{SUFFIX}"), "unknown user")
    auth.update_user_admin(reader, True)
    check(auth.get_user(reader).is_admin, "update_user_admin true")
    auth.update_user_admin(reader, False)
    check(not auth.get_user(reader).is_admin, "update_user_admin false")

    # -- The creator of an experiment gets MANAGE; default_permission READ applies elsewhere.
    as_user(editor, PASSWORD)
    experiment_id = client.create_experiment(f"auth-{SUFFIX}")
    as_user(ADMIN, ADMIN_PASSWORD)
    held = auth.get_user_permission(editor, "experiment", experiment_id)
    check(held.permission == "MANAGE" and held.allowed, f"creator holds MANAGE: {held.permission}")
    held = auth.get_user_permission(reader, "experiment", experiment_id)
    check(held.permission == "READ" and not held.allowed, f"default READ: {held.permission}")

    as_user(editor, PASSWORD)
    run = client.create_run(experiment_id)
    run_id = run.info.run_id
    client.log_param(run_id, "alpha", "1")
    client.log_metric(run_id, "loss", 0.5)
    check(run.info.user_id == editor or not keel, f"run owner is the caller: {run.info.user_id}")

    # -- A READ user reads, and its writes get 403 and change nothing.
    as_user(reader, PASSWORD)
    check(client.get_run(run_id).data.params == {"alpha": "1"}, "reader reads the run")
    check(
        any(e.experiment_id == experiment_id for e in client.search_experiments()),
        "reader finds the experiment",
    )
    fails(
        "PERMISSION_DENIED",
        lambda: client.log_param(run_id, "beta", "2"),
        "reader logs a param",
        needs="EDIT" if keel else None,
    )
    fails("PERMISSION_DENIED", lambda: client.create_run(experiment_id), "reader creates a run")
    fails("PERMISSION_DENIED", lambda: client.delete_experiment(experiment_id), "reader deletes")
    as_user(editor, PASSWORD)
    check("beta" not in client.get_run(run_id).data.params, "the refused write changed nothing")

    # -- The experiment's manager grants EDIT; the grant works; revoking takes it away.
    auth.grant_user_permission(reader, "experiment", experiment_id, "EDIT")
    fails(
        "RESOURCE_ALREADY_EXISTS",
        lambda: auth.grant_user_permission(reader, "experiment", experiment_id, "READ"),
        "second grant on the same resource",
    )
    as_user(reader, PASSWORD)
    client.log_param(run_id, "beta", "2")
    fails("PERMISSION_DENIED", lambda: client.delete_run(run_id), "EDIT does not delete")
    fails(
        "PERMISSION_DENIED",
        lambda: auth.grant_user_permission(reader, "experiment", experiment_id, "MANAGE"),
        "EDIT cannot grant",
    )
    as_user(editor, PASSWORD)
    auth.revoke_user_permission(reader, "experiment", experiment_id)
    fails(
        "RESOURCE_DOES_NOT_EXIST",
        lambda: auth.revoke_user_permission(reader, "experiment", experiment_id),
        "revoking an absent grant",
    )
    as_user(reader, PASSWORD)
    fails("PERMISSION_DENIED", lambda: client.log_param(run_id, "gamma", "3"), "after revoke")

    # -- Registered models: creator MANAGE, READ for others, NO_PERMISSIONS hides.
    as_user(editor, PASSWORD)
    model = f"model-{SUFFIX}"
    client.create_registered_model(model)
    version = client.create_model_version(model, f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias(model, "staging", version.version)
    as_user(ADMIN, ADMIN_PASSWORD)
    check(
        auth.get_user_permission(editor, "registered_model", model).permission == "MANAGE",
        "model creator holds MANAGE",
    )
    as_user(reader, PASSWORD)
    check(client.get_registered_model(model).name == model, "reader reads the model")
    fails(
        "PERMISSION_DENIED",
        lambda: client.set_registered_model_alias(model, "staging", version.version),
        "reader moves an alias",
    )
    fails("PERMISSION_DENIED", lambda: client.delete_registered_model(model), "reader deletes model")
    as_user(editor, PASSWORD)
    auth.grant_user_permission(reader, "registered_model", model, "USE")
    as_user(ADMIN, ADMIN_PASSWORD)
    held = auth.get_user_permission(reader, "registered_model", model)
    check(held.permission == "USE" and held.allowed, f"USE grant: {held.permission}")

    # -- Passwords: self-service needs the current one; admins reset.
    as_user(reader, PASSWORD)
    fails(
        "INVALID_PARAMETER_VALUE",
        lambda: auth.update_user_password(reader, PASSWORD + "-new"),
        "own password without the current one",
    )
    auth.update_user_password(reader, PASSWORD + "-new", current_password=PASSWORD)
    fails("UNAUTHENTICATED", lambda: client.get_run(run_id), "old password after the change")
    as_user(reader, PASSWORD + "-new")
    check(client.get_run(run_id).info.run_id == run_id, "new password works")
    fails("PERMISSION_DENIED", lambda: auth.get_user(editor), "a user reads another user")
    fails("PERMISSION_DENIED", lambda: auth.create_user(f"x-{SUFFIX}", PASSWORD), "user creates")

    if keel:
        keel_only(client, auth, reader, editor, run_id)

    # -- Deleting a user: its credential stops working.
    as_user(ADMIN, ADMIN_PASSWORD)
    auth.delete_user(reader)
    fails("RESOURCE_DOES_NOT_EXIST", lambda: auth.get_user(reader), "deleted user")
    as_user(reader, PASSWORD + "-new")
    fails("UNAUTHENTICATED", lambda: client.get_run(run_id), "deleted user's password")
    print(f"auth conformance ({target}): {checks} checks passed")


def keel_only(client, auth, reader, editor, run_id):
    """keel's additions: tokens, credentials in the query string refused."""
    as_user(ADMIN, ADMIN_PASSWORD)
    created = requests.post(
        f"{URI}/api/2.0/keel/tokens/create",
        json={"username": editor, "name": "ci", "expires_in": "90d"},
        auth=(ADMIN, ADMIN_PASSWORD),
        timeout=30,
    )
    check(created.status_code == 200, f"token created: {created.text}")
    token = created.json()["token"]
    token_id = created.json()["token_info"]["id"]
    listed = requests.get(
        f"{URI}/api/2.0/keel/tokens/list",
        params={"username": editor},
        auth=(ADMIN, ADMIN_PASSWORD),
        timeout=30,
    ).json()["tokens"]
    check([t["id"] for t in listed] == [token_id], f"token listed: {listed}")
    check(token not in str(listed), "the listing holds no secret")

    as_token(token)
    client.log_param(run_id, "delta", "4")
    check(client.get_run(run_id).data.params["delta"] == "4", "the token acts as its user")
    query = requests.get(
        f"{URI}/api/2.0/mlflow/runs/get",
        params={"run_id": run_id, "access_token": token},
        timeout=30,
    )
    check(query.status_code == 400, f"token in the query string refused: {query.status_code}")

    as_user(reader, PASSWORD + "-new")
    refused = requests.post(
        f"{URI}/api/2.0/keel/tokens/revoke",
        json={"id": token_id},
        auth=(reader, PASSWORD + "-new"),
        timeout=30,
    )
    check(refused.status_code == 403, f"another user's token: {refused.status_code}")
    as_user(ADMIN, ADMIN_PASSWORD)
    revoked = requests.post(
        f"{URI}/api/2.0/keel/tokens/revoke",
        json={"id": token_id},
        auth=(ADMIN, ADMIN_PASSWORD),
        timeout=30,
    )
    check(revoked.status_code == 200, f"revoked: {revoked.text}")
    as_token(token)
    fails("UNAUTHENTICATED", lambda: client.get_run(run_id), "revoked token")

    # A deleted user's tokens die with it.
    as_user(ADMIN, ADMIN_PASSWORD)
    doomed = f"doomed-{SUFFIX}"
    auth.create_user(doomed, PASSWORD)
    token = requests.post(
        f"{URI}/api/2.0/keel/tokens/create",
        json={"username": doomed},
        auth=(ADMIN, ADMIN_PASSWORD),
        timeout=30,
    ).json()["token"]
    as_token(token)
    check(client.get_run(run_id).info.run_id == run_id, "fresh token works")
    as_user(ADMIN, ADMIN_PASSWORD)
    auth.delete_user(doomed)
    as_token(token)
    fails("UNAUTHENTICATED", lambda: client.get_run(run_id), "token of a deleted user")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
