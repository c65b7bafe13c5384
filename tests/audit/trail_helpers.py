"""Events with chosen fields for the trail's tests (through ``audit_record``, the one writer)."""

import datetime as dt
from unittest import mock

from django.utils import timezone

from apps.accounts.roles import AUDITOR, DEVELOPER, PRODUCT_MANAGER
from apps.audit.services import audit_record
from tests.factories import member, product


def record(
    actor,
    verb,
    *,
    at=None,
    product_id=None,
    object_type="test.thing",
    object_id="1",
    before=None,
    after=None,
):
    if at is None:
        return audit_record(
            actor=actor,
            verb=verb,
            object_type=object_type,
            object_id=object_id,
            object_repr=f"thing {object_id}",
            product_id=product_id,
            before=before,
            after=after,
        )
    with mock.patch.object(timezone, "now", return_value=at):
        return audit_record(
            actor=actor,
            verb=verb,
            object_type=object_type,
            object_id=object_id,
            object_repr=f"thing {object_id}",
            product_id=product_id,
            before=before,
            after=after,
        )


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


class World:
    """Two teams, each with a product manager and a product; an auditor and a developer."""

    def __init__(self):
        self.pm = member(PRODUCT_MANAGER, username="alice")
        self.other_pm = member(PRODUCT_MANAGER, username="bob")
        self.auditor = member(AUDITOR, username="audrey")
        self.developer = member(DEVELOPER, username="dev")
        self.product = product(self.pm, slug="mine")
        self.other_product = product(self.other_pm, slug="theirs")
