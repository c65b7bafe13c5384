import pytest
from cryptography.fernet import Fernet
from rest_framework.test import APIClient

from apps.accounts.services import token_create


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _secret_keys(settings):
    """Each test encrypts provider secrets under its own fresh key, never a key file."""
    settings.PLM_SECRET_KEYS = [Fernet.generate_key().decode()]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """PBKDF2 dominates a suite that makes many users; MD5 is fine for test passwords."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def client_for():
    """An API client authenticated as ``user`` with a personal access token."""

    def make(user):
        client = APIClient()
        key = token_create(actor=user, user=user, name="test").key
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        return client

    return make


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker):
    """A real Celery worker process on the configured broker, sharing the test database."""
    from tests.worker import Worker

    with django_db_blocker.unblock():
        worker = Worker().start()
    yield worker
    worker.stop()
