"""Secrets at rest: Fernet tokens under rotating keys."""

import stat

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from apps.audit.models import AuditEvent
from apps.core.exceptions import ApplicationError
from apps.gateway import secrets, services
from apps.gateway.models import Provider

from .factories import admin, provider


def test_encrypt_gives_a_token_not_the_clear_text_and_decrypt_reverses_it():
    token = secrets.encrypt("sk-clear-value")
    assert "sk-clear-value" not in token
    assert token != secrets.encrypt("sk-clear-value")  # Fernet tokens are salted
    assert secrets.decrypt(token) == "sk-clear-value"


def test_an_old_key_token_still_decrypts_after_a_new_key_is_prepended(settings):
    """GIVEN a token made under key A WHEN key B is prepended THEN it still decrypts, and new
    tokens are made under B."""
    old = settings.PLM_SECRET_KEYS[0]
    token = secrets.encrypt("sk-old")
    new = Fernet.generate_key().decode()
    settings.PLM_SECRET_KEYS = [new, old]
    assert secrets.decrypt(token) == "sk-old"
    assert Fernet(new).decrypt(secrets.encrypt("sk-new").encode()) == b"sk-new"


def test_a_token_under_an_unknown_key_is_a_clear_error(settings):
    token = secrets.encrypt("sk-x")
    settings.PLM_SECRET_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(ApplicationError) as caught:
        secrets.decrypt(token)
    assert caught.value.code == "secret_unreadable"
    assert "sk-x" not in caught.value.message


def test_a_malformed_key_is_improperly_configured(settings):
    settings.PLM_SECRET_KEYS = ["not-a-fernet-key"]
    with pytest.raises(ImproperlyConfigured):
        secrets.encrypt("x")


def test_without_keys_one_is_generated_into_the_data_dir_with_mode_0600(settings, tmp_path):
    settings.PLM_SECRET_KEYS = []
    settings.DATA_DIR = tmp_path
    token = secrets.encrypt("sk-generated")
    path = tmp_path / "secret_keys"
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = path.read_text().strip()
    Fernet(key)  # a valid key
    assert secrets.decrypt(token) == "sk-generated"
    secrets.encrypt("again")
    assert path.read_text().strip() == key  # generated once, then reused


@pytest.mark.django_db
def test_rotate_secrets_reencrypts_every_secret_under_the_newest_key(settings):
    """GIVEN two providers with secrets under key A (and one without) WHEN key B is prepended
    and rotate_secrets runs THEN it reports 2, and the data decrypts with B alone."""
    old = settings.PLM_SECRET_KEYS[0]
    actor = admin()
    one = provider(actor, secret="sk-one-111")
    two = provider(actor, secret="sk-two-222")
    provider(actor)  # no secret: nothing to rotate
    history_rows = Provider.history.count()

    new = Fernet.generate_key().decode()
    settings.PLM_SECRET_KEYS = [new, old]
    from io import StringIO

    out = StringIO()
    call_command("rotate_secrets", stdout=out)
    assert "rotated 2 provider secret(s)" in out.getvalue()

    settings.PLM_SECRET_KEYS = [new]
    for obj, clear in ((one, "sk-one-111"), (two, "sk-two-222")):
        obj.refresh_from_db()
        assert services.provider_secret(obj) == clear
        assert Fernet(new).decrypt(obj.secret_encrypted.encode()).decode() == clear
    assert Provider.history.count() == history_rows  # re-encryption is not a content change
    event = AuditEvent.objects.order_by("-seq").first()
    assert event.verb == "provider.secrets_rotated"
    assert event.after == {"rotated": 2, "keys": 2}
