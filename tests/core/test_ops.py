import json

import pytest


@pytest.mark.django_db
def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["X-Request-ID"]


@pytest.mark.django_db
def test_readyz_reports_database_and_broker(client):
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["checks"] == {"database": "ok", "broker": "ok"}


@pytest.mark.django_db
def test_readyz_names_the_broker_that_fails(client, settings, monkeypatch):
    from plmportal.celery import app

    monkeypatch.setattr(app.conf, "broker_url", "redis://127.0.0.1:1/0")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["broker"]


@pytest.mark.django_db
def test_metrics_are_prometheus_text(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert b"django_http_requests_total" in response.content


def test_server_errors_under_the_api_use_the_error_shape(rf):
    from apps.core.views import server_error

    response = server_error(rf.get("/api/v1/products/"))
    assert response.status_code == 500
    assert response["Content-Type"].startswith("application/json")
    assert json.loads(response.content)["code"] == "server_error"
    html = server_error(rf.get("/products/"))
    assert html.status_code == 500
    assert not html["Content-Type"].startswith("application/json")


@pytest.mark.django_db
def test_unhandled_api_exception_is_json(monkeypatch):
    """GIVEN a bug behind an API endpoint WHEN it raises THEN the 500 keeps the error shape."""
    from django.test import Client

    from apps.catalog.api import views
    from tests.factories import member

    def boom(self, request, *args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(views.ProductViewSet, "list", boom)
    client = Client(raise_request_exception=False)
    client.force_login(member("product_manager"))
    response = client.get("/api/v1/products/")
    assert response.status_code == 500
    assert response.json()["code"] == "server_error"
