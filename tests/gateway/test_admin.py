"""Django admin shows providers read-only, with whether a secret is set and never the secret."""

import pytest
from django.test import Client

from apps.gateway import secrets

from ..factories import UserFactory
from .factories import price, provider

pytestmark = pytest.mark.django_db


def test_admin_pages_show_no_secret_nor_its_token():
    root = UserFactory(is_superuser=True, is_staff=True)
    prov = provider(root, secret="sk-ADMIN-canary-55")
    price(root, prov)
    client = Client()
    client.force_login(root)
    pages = [
        "/admin/gateway/provider/",
        f"/admin/gateway/provider/{prov.pk}/change/",
        f"/admin/gateway/provider/{prov.pk}/history/",
        "/admin/gateway/providerprice/",
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        body = response.content.decode()
        assert "sk-ADMIN-canary-55" not in body, url
        assert prov.secret_encrypted not in body, url
    assert secrets.decrypt(prov.secret_encrypted) == "sk-ADMIN-canary-55"
