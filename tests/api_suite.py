"""A reusable REST API test suite, applied to every resource (after NetBox's APIViewTestCases).

A resource's test class subclasses ``APIResourceSuite`` and describes the resource: its URL,
how to make one object in a user's team (through the services), what a create and a change
look like, which audit verbs each write records, and how many SQL queries its list costs. The
suite then checks, for every resource in the same way:

- 401 for anonymous requests (with the error shape ``{"code", "message", "fields"}``);
- 404 for an object of another team (out of scope), on reads and on writes;
- 403 for a user who can see the object but whose role lacks the verb (reviewer, auditor);
- 2xx in scope, with exactly the audit events the service writes (one per write, plus the
  ``permission.granted`` of a create that grants the team its verbs);
- 405 for the methods a resource does not offer;
- a list costs the same exact number of queries for 3 rows as for 30;
- a filter value that does not parse is a 400 in the error shape.
"""

from collections import Counter
from typing import Any, ClassVar

import pytest
from rest_framework.test import APIClient

from apps.accounts.roles import AUDITOR, PRODUCT_MANAGER, REVIEWER
from apps.audit.models import AuditEvent

from .factories import TeamFactory, member


def last_seq() -> int:
    event = AuditEvent.objects.order_by("-seq").first()
    return event.seq if event else 0


def verbs_since(seq: int) -> Counter:
    return Counter(AuditEvent.objects.filter(seq__gt=seq).values_list("verb", flat=True))


def assert_error(response, status: int, code: str | None = None) -> dict:
    """The response is an error of ``status`` in the one error shape; returns the body."""
    assert response.status_code == status, (response.status_code, getattr(response, "data", ""))
    body = response.json()
    assert set(body) == {"code", "message", "fields"}, body
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["fields"], dict)
    if code is not None:
        assert body["code"] == code, body
    return body


class APIResourceSuite:
    """Describe a resource with the attributes and hooks below; the tests come for free."""

    url: ClassVar[str]  # the list URL, such as "/api/v1/products/"
    create_verbs: ClassVar[tuple[str, ...] | None] = None  # None: POST is not offered
    create_format: ClassVar[str] = "json"
    update_verbs: ClassVar[tuple[str, ...] | None] = None  # None: PATCH is not offered
    delete_verbs: ClassVar[tuple[str, ...] | None] = None  # None: DELETE is not offered
    # Extra POST actions on an object: (action, payload, audit verbs).
    actions: ClassVar[tuple[tuple[str, dict, tuple[str, ...]], ...]] = ()
    # Roles of the object's own team that can see it but may not write it.
    wrong_roles: ClassVar[tuple[str, ...]] = (REVIEWER, AUDITOR)
    list_queries: ClassVar[int]  # the exact count for a list request, whatever the rows
    list_extra: ClassVar[int] = 0  # rows in the list besides the ones made (e.g. the token)
    bad_filters: ClassVar[tuple[str, ...]] = ()  # query strings that must be a 400
    immutable: ClassVar[bool] = False  # PUT/PATCH refused with code "immutable"

    # --- hooks ---------------------------------------------------------------------------

    def make(self, actor) -> Any:
        """Create one object in ``actor``'s team through the services."""
        raise NotImplementedError

    def make_for_list(self, actor) -> Any:
        """A row for the query-count test: as rich as a real one (relations, lineage)."""
        return self.make(actor)

    def create_payload(self, actor) -> dict:
        """A valid POST body for an object in ``actor``'s team."""
        raise NotImplementedError

    def update_payload(self, obj) -> dict:
        """A valid PATCH body that changes ``obj``."""
        raise NotImplementedError

    def detail_url(self, obj) -> str:
        return f"{self.url}{obj.pk}/"

    def post(self, client: APIClient, url: str, data: dict):
        return client.post(url, data, format=self.create_format)

    # --- people ----------------------------------------------------------------------------

    @pytest.fixture
    def team(self, db):
        return TeamFactory()

    @pytest.fixture
    def owner(self, team):
        """A product manager of ``team``: the author of the objects under test."""
        return member(PRODUCT_MANAGER, team)

    @pytest.fixture
    def outsider(self, db):
        """A product manager of another team: every object of ``team`` is out of scope."""
        return member(PRODUCT_MANAGER)

    @pytest.fixture
    def obj(self, owner):
        return self.make(owner)

    # --- 401 ---------------------------------------------------------------------------------

    def test_anonymous_is_401(self, obj):
        client = APIClient()
        assert_error(client.get(self.url), 401)
        assert_error(client.get(self.detail_url(obj)), 401)
        assert_error(client.post(self.url, {}, format="json"), 401)
        assert_error(client.patch(self.detail_url(obj), {}, format="json"), 401)
        assert_error(client.delete(self.detail_url(obj)), 401)
        for name, payload, _ in self.actions:
            assert_error(client.post(f"{self.detail_url(obj)}{name}/", payload, format="json"), 401)

    def test_bad_bearer_token_is_401(self, obj):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION="Bearer plm_nope_not-a-real-token")
        assert_error(client.get(self.url), 401)

    # --- reads -------------------------------------------------------------------------------

    def test_list_shows_only_objects_in_scope(self, client_for, owner, outsider, obj):
        theirs = self.make(outsider)
        ids = {row["id"] for row in self._all_rows(client_for(owner))}
        assert str(obj.pk) in ids
        assert str(theirs.pk) not in ids

    def test_retrieve_in_scope_is_200(self, client_for, owner, obj):
        response = client_for(owner).get(self.detail_url(obj))
        assert response.status_code == 200, response.data
        assert response.json()["id"] == str(obj.pk)

    def test_out_of_scope_is_404_for_reads_and_writes(self, client_for, outsider, obj):
        client = client_for(outsider)
        seq = last_seq()
        assert_error(client.get(self.detail_url(obj)), 404)
        if self.update_verbs is not None:
            assert_error(
                client.patch(self.detail_url(obj), self.update_payload(obj), format="json"), 404
            )
        if self.delete_verbs is not None:
            assert_error(client.delete(self.detail_url(obj)), 404)
        for name, payload, _ in self.actions:
            assert_error(client.post(f"{self.detail_url(obj)}{name}/", payload, format="json"), 404)
        assert verbs_since(seq) == Counter()

    def test_bad_filter_values_are_400(self, client_for, owner, obj):
        client = client_for(owner)
        for query in self.bad_filters:
            assert_error(client.get(f"{self.url}?{query}"), 400, "invalid")

    def test_list_query_count_is_constant(self, client_for, owner, django_assert_num_queries):
        """GIVEN 3 rows and then 30 WHEN the list is read THEN both cost the same queries."""
        client = client_for(owner)
        client.get(self.url)  # warm up: the token's last_used_at and the content types
        for _ in range(3):
            self.make_for_list(owner)
        with django_assert_num_queries(self.list_queries):
            response = client.get(self.url)
        assert response.json()["count"] == 3 + self.list_extra
        for _ in range(27):
            self.make_for_list(owner)
        with django_assert_num_queries(self.list_queries):
            response = client.get(self.url)
        assert response.json()["count"] == 30 + self.list_extra
        assert len(response.json()["results"]) == 25

    # --- writes ------------------------------------------------------------------------------

    def test_create_in_scope_is_201_with_its_audit_events(self, client_for, owner):
        client = client_for(owner)
        payload = self.create_payload(owner) if self.create_verbs is not None else {}
        seq = last_seq()
        response = self.post(client, self.url, payload)
        if self.create_verbs is None:
            assert_error(response, 405)
            assert verbs_since(seq) == Counter()
            return
        assert response.status_code == 201, response.data
        assert verbs_since(seq) == Counter(self.create_verbs)
        assert client.get(self.detail_url_of(response.json())).status_code == 200

    def detail_url_of(self, body: dict) -> str:
        return f"{self.url}{body['id']}/"

    def test_create_with_wrong_role_is_403(self, client_for, owner, team):
        if self.create_verbs is None:
            return
        payload = self.create_payload(owner)
        for role in self.wrong_roles:
            client = client_for(member(role, team))
            seq = last_seq()
            response = self.post(client, self.url, payload)
            assert_error(response, 403)
            assert verbs_since(seq) == Counter(), role

    def test_update_in_scope_is_200_with_one_audit_event(self, client_for, owner, obj):
        client = client_for(owner)
        seq = last_seq()
        if self.update_verbs is None:
            response = client.patch(self.detail_url(obj), {}, format="json")
            assert_error(response, 405)
            assert verbs_since(seq) == Counter()
            return
        response = client.patch(self.detail_url(obj), self.update_payload(obj), format="json")
        assert response.status_code == 200, response.data
        assert verbs_since(seq) == Counter(self.update_verbs)

    def test_update_with_wrong_role_is_403(self, client_for, team, obj):
        if self.update_verbs is None:
            return
        for role in self.wrong_roles:
            client = client_for(member(role, team))
            assert client.get(self.detail_url(obj)).status_code == 200, role  # can see it
            seq = last_seq()
            response = client.patch(self.detail_url(obj), self.update_payload(obj), format="json")
            assert_error(response, 403)
            assert verbs_since(seq) == Counter(), role

    def test_versions_are_immutable(self, client_for, owner, obj):
        if not self.immutable:
            return
        client = client_for(owner)
        seq = last_seq()
        for method in (client.put, client.patch):
            body = assert_error(
                method(self.detail_url(obj), {"changelog": "x"}, format="json"), 405
            )
            assert body["code"] == "immutable"
            assert "immutable" in body["message"]
        assert verbs_since(seq) == Counter()

    def test_delete_in_scope_is_204_with_one_audit_event(self, client_for, owner, obj):
        client = client_for(owner)
        seq = last_seq()
        response = client.delete(self.detail_url(obj))
        if self.delete_verbs is None:
            assert_error(response, 405)
            assert verbs_since(seq) == Counter()
            return
        assert response.status_code == 204, response.content
        assert verbs_since(seq) == Counter(self.delete_verbs)
        assert_error(client.get(self.detail_url(obj)), 404)

    def test_delete_with_wrong_role_is_403(self, client_for, team, obj):
        if self.delete_verbs is None:
            return
        for role in self.wrong_roles:
            client = client_for(member(role, team))
            seq = last_seq()
            assert_error(client.delete(self.detail_url(obj)), 403)
            assert verbs_since(seq) == Counter(), role

    def test_actions_in_scope_record_their_audit_events(self, client_for, owner):
        client = client_for(owner)
        for name, payload, verbs in self.actions:
            obj = self.make(owner)
            seq = last_seq()
            response = client.post(f"{self.detail_url(obj)}{name}/", payload, format="json")
            assert response.status_code == 200, (name, response.data)
            assert verbs_since(seq) == Counter(verbs), name

    def test_actions_with_wrong_role_are_403(self, client_for, team, obj):
        for name, payload, _ in self.actions:
            for role in self.wrong_roles:
                client = client_for(member(role, team))
                seq = last_seq()
                response = client.post(f"{self.detail_url(obj)}{name}/", payload, format="json")
                assert_error(response, 403)
                assert verbs_since(seq) == Counter(), (name, role)

    # --- helpers -----------------------------------------------------------------------------

    def _all_rows(self, client: APIClient) -> list[dict]:
        rows, url = [], self.url
        while url:
            response = client.get(url)
            assert response.status_code == 200, response.data
            body = response.json()
            rows.extend(body["results"])
            url = body["next"]
        return rows
