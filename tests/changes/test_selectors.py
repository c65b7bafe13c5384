import pytest

from apps.changes import selectors
from apps.changes import services as changes
from tests.changes.helpers import PASSWORD, submitted_cr, team_reviewer
from tests.factories import member

pytestmark = pytest.mark.django_db


def test_queue_shows_what_waits_for_the_reviewer(django_assert_max_num_queries):
    pm = member("product_manager")
    r1, r2 = team_reviewer(pm), team_reviewer(pm)
    outsider = member("reviewer")
    cr = submitted_cr(pm)
    assert selectors.change_request_queue_for(user=r1) == [cr]
    assert selectors.change_request_queue_for(user=pm) == []  # the requester
    assert selectors.change_request_queue_for(user=outsider) == []
    changes.change_request_approve(actor=r1, cr=cr, password=PASSWORD)
    assert selectors.change_request_queue_for(user=r1) == []
    assert selectors.change_request_queue_for(user=r2) == []  # approved: no longer in review


def test_queue_query_count_does_not_grow(django_assert_num_queries):
    pm = member("product_manager")
    reviewer = team_reviewer(pm)
    for _ in range(3):
        submitted_cr(pm)
    reviewer = type(reviewer).objects.get(pk=reviewer.pk)
    with django_assert_num_queries(5) as ctx:
        assert len(selectors.change_request_queue_for(user=reviewer)) == 3
    for _ in range(5):
        submitted_cr(pm)
    reviewer = type(reviewer).objects.get(pk=reviewer.pk)
    with django_assert_num_queries(len(ctx.captured_queries)):
        assert len(selectors.change_request_queue_for(user=reviewer)) == 8
