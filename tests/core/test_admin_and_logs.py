import json
import logging

import pytest

from apps.core.logging import JsonFormatter, RequestIdFilter, request_id_var
from tests.factories import member, product, prompt_with_versions

pytestmark = pytest.mark.django_db


def test_admin_pages_render_for_a_superuser(client):
    from apps.accounts.models import User

    admin = User.objects.create_superuser("root", "root@example.test", "x-long-pass-1")
    pm = member("product_manager")
    p = product(pm)
    _, (v,) = prompt_with_versions(pm, "Hi")
    client.force_login(admin)
    for url in (
        "/admin/",
        "/admin/catalog/product/",
        f"/admin/catalog/product/{p.pk}/change/",
        f"/admin/catalog/product/{p.pk}/history/",
        "/admin/catalog/prompttemplateversion/",
        f"/admin/catalog/prompttemplateversion/{v.pk}/change/",
        "/admin/accounts/user/",
        "/admin/accounts/team/",
        "/admin/audit/auditevent/",
    ):
        assert client.get(url).status_code == 200, url


def test_request_id_is_echoed_and_logged(client, caplog):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")
    assert response["X-Request-ID"] == "abc-123"
    response = client.get("/healthz", HTTP_X_REQUEST_ID="bad id with spaces")
    assert response["X-Request-ID"] != "bad id with spaces"


def test_log_lines_are_json_with_the_request_id():
    record = logging.makeLogRecord(
        {
            "msg": "hello %s",
            "args": ("world",),
            "levelname": "INFO",
            "name": "plm",
            "custom": {"a": 1},
        }
    )
    token = request_id_var.set("rid-1")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id_var.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "hello world"
    assert line["request_id"] == "rid-1"
    assert line["custom"] == {"a": 1}


def test_change_control_admin_is_read_only(client):
    from apps.accounts.models import User
    from tests.changes.helpers import submitted_cr

    admin = User.objects.create_superuser("root2", "r@example.test", "x-long-pass-1")
    cr = submitted_cr(member("product_manager"))
    client.force_login(admin)
    for url in (
        "/admin/changes/changerequest/",
        f"/admin/changes/changerequest/{cr.pk}/change/",
        "/admin/releases/release/",
        f"/admin/releases/release/{cr.proposed_id}/change/",
        "/admin/changes/approvalpolicy/",
    ):
        assert client.get(url).status_code == 200, url
    assert client.get("/admin/changes/changerequest/add/").status_code == 403
