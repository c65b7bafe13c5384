"""The portal pages: the catalog, an API's page (docs, reference, examples, subscribe, the
management section), applications and their keys (the secret shown once), the approvers'
queue, the plan form's backlog question, the product and change request panels, scope (403 and
404) and query counts."""

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.accounts.roles import AUDITOR, DEVELOPER, PRODUCT_MANAGER
from apps.portal.models import (
    APIKey,
    APIStatus,
    Plan,
    PublishedAPI,
    Subscription,
    SubscriptionState,
    UsageRecord,
)
from tests.factories import member

from .factories import (
    api_key,
    application,
    gateway_setup,
    plan,
    published_api,
    released,
    subscription,
)

pytestmark = pytest.mark.django_db

# What the portal's sections add to other apps' pages (their query-count tests import these):
# the product page's "Published APIs" (one query: the APIs with their subscriber counts) and the
# change request page's impact (one: the APIs that follow the product's release).
PRODUCT_PANEL_QUERIES = 1
CHANGE_PANEL_QUERIES = 1


@pytest.fixture
def setup():
    return gateway_setup()


def _login(client, user):
    client.force_login(user)
    return client


def _text(response) -> str:
    return response.content.decode()


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def _follow_messages(client, response) -> str:
    assert response.status_code == 302, _text(response)[:2000]
    return _text(client.get(response["Location"]))


# --- the catalog -------------------------------------------------------------------------------


def test_catalog_lists_published_apis_with_plans_and_a_link(client, setup):
    dev = member(DEVELOPER)
    published_api(setup.pm, slug="a-draft", status=APIStatus.DRAFT)
    response = _login(client, dev).get(reverse("portal_catalog"))
    assert response.status_code == 200
    html = _text(response)
    assert f'data-api-link="{setup.api.slug}"' in html
    assert reverse("portal_api_detail", args=[setup.api.slug]) in html
    assert setup.plan.name in html
    assert "a-draft" not in html  # drafts are the product team's
    assert 'class="active"' in html and ">Portal" in html


def test_catalog_shows_the_sunset_date_of_a_deprecated_api(client, setup):
    api = setup.api
    api.status, api.sunset_at = APIStatus.DEPRECATED, timezone.now() + dt.timedelta(days=30)
    api.save()
    html = _text(_login(client, setup.developer).get(reverse("portal_catalog")))
    assert "deprecated" in html and f"sunset {api.sunset_at:%Y-%m-%d}" in html


def test_catalog_search_and_empty_states(client, setup):
    c = _login(client, setup.developer)
    html = _text(c.get(reverse("portal_catalog"), {"q": setup.api.slug}))
    assert f'data-api-link="{setup.api.slug}"' in html
    html = _text(c.get(reverse("portal_catalog"), {"q": "no-such-thing"}))
    assert "No API matches" in html
    # a partial for htmx: the results only
    part = c.get(reverse("portal_catalog"), {"q": "no-such-thing"}, HTTP_HX_REQUEST="true")
    assert "<html" not in _text(part) and "No API matches" in _text(part)


def test_catalog_empty(client):
    html = _text(_login(client, member(DEVELOPER)).get(reverse("portal_catalog")))
    assert "No APIs published yet" in html


def test_catalog_requires_login(client):
    response = client.get(reverse("portal_catalog"))
    assert response.status_code == 302 and "login" in response["Location"]


def _catalog_queries(client, user) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(reverse("portal_catalog")).status_code == 200
    return len(ctx.captured_queries)


def test_catalog_query_count_is_constant(client, setup, django_assert_num_queries):
    c = _login(client, setup.developer)
    few = _catalog_queries(c, setup.developer)
    for i in range(6):
        api = published_api(setup.pm, slug=f"more-{i}")
        plan(setup.pm, api, slug="free")
        plan(setup.pm, api, slug="pro", approval=True)
    with django_assert_num_queries(few):
        html = _text(c.get(reverse("portal_catalog")))
    assert html.count("data-api-link=") == 7


# --- an API's page -----------------------------------------------------------------------------


def test_api_page_renders_docs_reference_and_examples(client, setup):
    html = _text(
        _login(client, setup.developer).get(reverse("portal_api_detail", args=[setup.api.slug]))
    )
    assert "<h1>Test API</h1>" in html  # the Markdown docs, rendered
    assert 'data-variable="q"' in html  # the variables table
    # curl and openai examples name the slug and carry the variables
    curl = re.search(r'id="example-curl"><code>(.*?)</code>', html, re.S).group(1)
    assert "/v1/chat/completions" in curl and f"&quot;model&quot;: &quot;{setup.api.slug}" in curl
    assert "&quot;variables&quot;" in curl and "&quot;q&quot;" in curl
    assert "Authorization: Bearer $PLM_API_KEY" in curl
    python = re.search(r'id="example-python"><code>(.*?)</code>', html, re.S).group(1)
    assert "OpenAI(base_url=" in python and "/v1&quot;" in python
    assert f"model=&quot;{setup.api.slug}&quot;" in python
    assert "extra_body={&quot;variables&quot;" in python and "&quot;q&quot;" in python
    invoke = re.search(r'id="example-invoke"><code>(.*?)</code>', html, re.S).group(1)
    assert f"/v1/apis/{setup.api.slug}/invoke" in invoke
    # limits per plan
    assert f'data-plan="{setup.plan.slug}"' in html and "no quota" in html
    # the subscribe form, no management section for a developer
    assert 'id="subscribe-form"' not in html  # the developer's application is subscribed
    assert 'id="manage"' not in html


def test_api_page_examples_use_the_public_url(client, setup, settings):
    settings.PORTAL_PUBLIC_URL = "https://llm.example.test/"
    html = _text(
        _login(client, setup.developer).get(reverse("portal_api_detail", args=[setup.api.slug]))
    )
    assert "curl https://llm.example.test/v1/chat/completions" in html
    assert "base_url=&quot;https://llm.example.test/v1&quot;" in html


def test_api_page_for_its_product_manager_has_the_management_section(client, setup):
    html = _text(_login(client, setup.pm).get(reverse("portal_api_detail", args=[setup.api.slug])))
    assert 'id="manage"' in html and 'id="subscribers"' in html and 'id="usage"' in html
    assert setup.application.name in html  # the subscribers list
    assert "Deprecate…" in html and 'id="api-edit-form"' in html
    assert "data-usage-empty" in html  # no calls yet


def test_api_page_404_for_unknown_and_out_of_scope_drafts(client, setup):
    draft = published_api(setup.pm, slug="secret-draft", status=APIStatus.DRAFT)
    c = _login(client, member(DEVELOPER))
    assert c.get(reverse("portal_api_detail", args=["nope"])).status_code == 404
    assert c.get(reverse("portal_api_detail", args=[draft.slug])).status_code == 404
    pm = _login(client, setup.pm)
    assert pm.get(reverse("portal_api_detail", args=[draft.slug])).status_code == 200


def test_management_actions_are_403_for_developers(client, setup):
    c = _login(client, setup.developer)
    slug = setup.api.slug
    assert c.post(reverse("portal_api_publish", args=[slug])).status_code == 403
    assert c.post(reverse("portal_api_retire", args=[slug])).status_code == 403
    assert c.post(reverse("portal_api_deprecate", args=[slug])).status_code == 403
    assert c.post(reverse("portal_api_edit", args=[slug]), {"name": "x"}).status_code == 403
    assert c.get(reverse("portal_plan_create", args=[slug])).status_code == 403
    assert c.get(reverse("portal_plan_edit", args=[setup.plan.pk])).status_code == 403
    assert c.get(reverse("portal_api_create")).status_code == 403


def test_api_page_shows_a_deprecation_banner(client, setup):
    successor = published_api(setup.pm, slug="the-successor")
    api = setup.api
    api.status = APIStatus.DEPRECATED
    api.sunset_at = timezone.now() + dt.timedelta(days=20)
    api.migration_note = "Move to **the new one**."
    api.successor = successor
    api.save()
    html = _text(_login(client, setup.developer).get(reverse("portal_api_detail", args=[api.slug])))
    assert 'id="deprecation"' in html
    assert f"stops answering on {api.sunset_at:%Y-%m-%d}" in html
    assert "<strong>the new one</strong>" in html
    assert reverse("portal_api_detail", args=["the-successor"]) in html


# --- creating and managing an API --------------------------------------------------------------


def test_create_an_api(client):
    pm = member(PRODUCT_MANAGER)
    rel = released(pm)
    c = _login(client, pm)
    assert c.get(reverse("portal_api_create")).status_code == 200
    response = c.post(
        reverse("portal_api_create"),
        {"product": rel.product.pk, "slug": "bad slug!", "name": ""},
    )
    assert response.status_code == 200
    form = response.context["form"]
    assert "slug" in form.errors and "name" in form.errors
    response = c.post(
        reverse("portal_api_create"),
        {"product": rel.product.pk, "slug": "new-api", "name": "New API", "docs": "# Hi"},
    )
    assert response.status_code == 302
    api = PublishedAPI.objects.get(slug="new-api")
    assert api.status == APIStatus.DRAFT
    assert response["Location"] == reverse("portal_api_detail", args=["new-api"])


def test_create_an_api_with_a_taken_slug_shows_the_services_error(client, setup):
    c = _login(client, setup.pm)
    response = c.post(
        reverse("portal_api_create"),
        {"product": setup.api.product.pk, "slug": setup.api.slug, "name": "Again"},
    )
    assert response.status_code == 200
    assert response.context["form"].errors


def test_publish_deprecate_retire(client):
    pm = member(PRODUCT_MANAGER)
    api = published_api(pm, status=APIStatus.DRAFT)
    plan(pm, api)
    c = _login(client, pm)
    html = _follow_messages(c, c.post(reverse("portal_api_publish", args=[api.slug])))
    assert "is published" in html
    # deprecate: a past date is refused with a message on the form
    yesterday = timezone.localdate() - dt.timedelta(days=1)
    response = c.post(
        reverse("portal_api_deprecate", args=[api.slug]),
        {"sunset_at": yesterday.isoformat(), "migration_note": "Go."},
    )
    assert response.status_code == 200
    assert "The sunset date must be in the future." in _text(response)
    sunset = timezone.localdate() + dt.timedelta(days=30)
    response = c.post(
        reverse("portal_api_deprecate", args=[api.slug]),
        {"sunset_at": sunset.isoformat(), "migration_note": "Use v2."},
    )
    html = _follow_messages(c, response)
    api.refresh_from_db()
    assert api.status == APIStatus.DEPRECATED and "is deprecated" in html
    html = _follow_messages(c, c.post(reverse("portal_api_retire", args=[api.slug])))
    api.refresh_from_db()
    assert api.status == APIStatus.RETIRED and "is retired" in html
    # a refused move is a message, not a 500
    html = _follow_messages(c, c.post(reverse("portal_api_publish", args=[api.slug])))
    assert "cannot become" in html


def test_edit_docs(client, setup):
    c = _login(client, setup.pm)
    response = c.post(
        reverse("portal_api_edit", args=[setup.api.slug]),
        {"name": "Renamed", "summary": "Short.", "docs": "## New docs\r\n\r\nText."},
    )
    assert response.status_code == 302
    setup.api.refresh_from_db()
    assert setup.api.name == "Renamed" and setup.api.docs == "## New docs\n\nText."
    response = c.post(reverse("portal_api_edit", args=[setup.api.slug]), {"name": ""})
    assert response.status_code == 200 and response.context["edit_form"].errors


def test_plan_create_and_edit(client, setup):
    c = _login(client, setup.pm)
    url = reverse("portal_plan_create", args=[setup.api.slug])
    assert c.get(url).status_code == 200
    part = c.get(url, HTTP_HX_REQUEST="true")
    assert "<html" not in _text(part) and 'id="plan-form"' in _text(part)
    response = c.post(url, {"slug": "pro", "name": "Pro", "requests_per_minute": "0"})
    assert response.status_code == 200 and "requests_per_minute" in response.context["form"].errors
    response = c.post(
        url,
        {"slug": "pro", "name": "Pro", "requests_per_minute": "600", "approval_required": "on"},
    )
    assert response.status_code == 302
    pro = Plan.objects.get(api=setup.api, slug="pro")
    assert pro.approval_required and pro.tokens_per_month is None
    # htmx: the client is told where to go
    response = c.post(
        reverse("portal_plan_edit", args=[pro.pk]),
        {"name": "Pro+", "requests_per_minute": "900", "approval_required": "on", "active": "on"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200 and response["HX-Redirect"].endswith("#plans")
    pro.refresh_from_db()
    assert pro.name == "Pro+" and pro.requests_per_minute == 900


def _plan_post(**extra):
    return {"name": "Pro", "requests_per_minute": "600", "active": "on", **extra}


def test_switching_off_approval_with_a_backlog_asks_first(client, setup):
    """GIVEN a plan that needs approval with two pending requests
    WHEN its manager switches approval off
    THEN the page asks what to do with them, and the answer is applied on resubmit."""
    pro = plan(setup.pm, setup.api, slug="pro", approval=True)
    subs = [subscription(application(member(DEVELOPER)), pro, state="pending") for _ in range(2)]
    c = _login(client, setup.pm)
    url = reverse("portal_plan_edit", args=[pro.pk])
    response = c.post(url, _plan_post())
    assert response.status_code == 200
    html = _text(response)
    assert 'id="backlog-question"' in html and "2 requests are pending" in html
    assert 'name="approve_pending" value="approve"' in html
    assert 'name="approve_pending" value="leave"' in html
    pro.refresh_from_db()
    assert pro.approval_required  # nothing changed yet
    # leave them pending
    response = c.post(url, _plan_post(approve_pending="leave"))
    assert response.status_code == 302
    pro.refresh_from_db()
    assert not pro.approval_required
    assert {s.state for s in Subscription.objects.filter(pk__in=[s.pk for s in subs])} == {
        "pending"
    }


def test_backlog_answer_approve_them_all(client, setup):
    pro = plan(setup.pm, setup.api, slug="pro", approval=True)
    sub = subscription(application(member(DEVELOPER)), pro, state="pending")
    c = _login(client, setup.pm)
    url = reverse("portal_plan_edit", args=[pro.pk])
    assert "1 request is pending" in _text(c.post(url, _plan_post()))
    assert c.post(url, _plan_post(approve_pending="approve")).status_code == 302
    sub.refresh_from_db()
    assert sub.state == SubscriptionState.ACTIVE


# --- subscribing -------------------------------------------------------------------------------


def test_subscribe_without_an_application_offers_to_create_one(client, setup):
    dev = member(DEVELOPER)
    c = _login(client, dev)
    html = _text(c.get(reverse("portal_api_detail", args=[setup.api.slug])))
    assert 'id="application-create-inline"' in html and 'id="subscribe-form"' not in html
    response = c.post(
        reverse("portal_application_list"),
        {"name": "My bot", "next": reverse("portal_api_detail", args=[setup.api.slug])},
    )
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("portal_api_detail", args=[setup.api.slug]))
    html = _text(c.get(response["Location"]))
    assert 'id="subscribe-form"' in html and "My bot" in html
    app = dev.applications.get()
    assert f'<option value="{app.pk}" selected>My bot</option>' in html


def test_subscribe_to_a_plan_without_approval_is_active(client, setup):
    dev = member(DEVELOPER)
    app = application(dev, "bot")
    c = _login(client, dev)
    html = _text(c.get(reverse("portal_api_detail", args=[setup.api.slug])))
    assert 'id="subscribe-form"' in html and 'id="subscribe-button"' in html
    response = c.post(
        reverse("portal_api_subscribe", args=[setup.api.slug]),
        {"application": app.pk, "plan": setup.plan.pk, "justification": "A bot."},
    )
    assert response["Location"] == reverse("portal_application_detail", args=[app.pk])
    html = _follow_messages(c, response)
    assert "active" in html and "Create a key" in html
    assert Subscription.objects.get(application=app).state == SubscriptionState.ACTIVE


def test_subscribe_to_a_plan_with_approval_is_pending(client, setup):
    pro = plan(setup.pm, setup.api, slug="pro", approval=True)
    dev = member(DEVELOPER)
    app = application(dev, "bot")
    c = _login(client, dev)
    response = c.post(
        reverse("portal_api_subscribe", args=[setup.api.slug]),
        {"application": app.pk, "plan": pro.pk, "justification": "Production traffic."},
    )
    html = _follow_messages(c, response)
    assert "pending approval" in html
    assert Subscription.objects.get(application=app).state == SubscriptionState.PENDING


def test_subscribe_form_validates(client, setup):
    dev = member(DEVELOPER)
    application(dev, "bot")
    c = _login(client, dev)
    response = c.post(reverse("portal_api_subscribe", args=[setup.api.slug]), {})
    assert response.status_code == 200
    errors = response.context["subscribe_form"].errors
    assert "application" in errors and "plan" in errors
    # someone else's application is not a choice
    other = application(member(DEVELOPER))
    response = c.post(
        reverse("portal_api_subscribe", args=[setup.api.slug]),
        {"application": other.pk, "plan": setup.plan.pk},
    )
    assert "application" in response.context["subscribe_form"].errors


def test_a_second_subscription_of_the_same_application_is_refused(client, setup):
    c = _login(client, setup.developer)
    response = c.post(
        reverse("portal_api_subscribe", args=[setup.api.slug]),
        {"application": setup.application.pk, "plan": setup.plan.pk},
    )
    assert response.status_code == 200
    assert response.context["subscribe_form"].non_field_errors()


# --- applications and keys ---------------------------------------------------------------------


def test_application_list_and_create(client):
    dev = member(DEVELOPER)
    c = _login(client, dev)
    html = _text(c.get(reverse("portal_application_list")))
    assert "No applications yet" in html and 'id="application-create"' in html
    response = c.post(reverse("portal_application_list"), {"name": ""})
    assert response.status_code == 200 and "name" in response.context["form"].errors
    response = c.post(reverse("portal_application_list"), {"name": "Helpdesk bot"})
    assert response.status_code == 302
    html = _text(c.get(response["Location"]))
    assert "Helpdesk bot" in html and "created" in html
    # the same name again: the service's refusal, on the form
    response = c.post(reverse("portal_application_list"), {"name": "Helpdesk bot"})
    assert response.status_code == 200 and response.context["form"].errors


def test_application_page_scope(client, setup):
    url = reverse("portal_application_detail", args=[setup.application.pk])
    assert _login(client, setup.developer).get(url).status_code == 200
    assert _login(client, member(DEVELOPER)).get(url).status_code == 404
    html = _text(_login(client, member(AUDITOR)).get(url))  # auditors read, without buttons
    assert 'id="key-create"' not in html


def test_application_page_lists_subscriptions_and_keys(client, setup):
    html = _text(
        _login(client, setup.developer).get(
            reverse("portal_application_detail", args=[setup.application.pk])
        )
    )
    assert f'data-api="{setup.api.slug}"' in html and "active" in html
    assert f"{setup.key.prefix}…" in html and setup.secret not in html
    assert 'data-key-status="active"' in html and 'id="key-create"' in html
    assert "data-usage-empty" in html


def test_key_secret_is_shown_exactly_once(client, setup):
    c = _login(client, setup.developer)
    url = reverse("portal_application_detail", args=[setup.application.pk])
    response = c.post(reverse("portal_key_create", args=[setup.application.pk]), {"name": "ci"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    html = _text(response)
    new = APIKey.objects.get(application=setup.application, name="ci")
    secret = re.search(r'id="new-key-secret" value="([^"]+)"', html).group(1)
    assert secret.startswith(f"plm_live_{new.prefix}_")
    assert html.count(secret) == 1 and "it will not be shown again" in html
    later = _text(c.get(url))
    assert secret not in later and 'id="new-key-secret"' not in later
    assert f"{new.prefix}…" in later


def test_key_create_with_htmx_swaps_the_keys_section(client, setup):
    c = _login(client, setup.developer)
    response = c.post(
        reverse("portal_key_create", args=[setup.application.pk]),
        {"name": "ci"},
        HTTP_HX_REQUEST="true",
    )
    html = _text(response)
    assert "<html" not in html and 'id="new-key-secret"' in html and 'id="keys"' in html


def test_key_form_validates(client, setup):
    c = _login(client, setup.developer)
    past = (timezone.localdate() - dt.timedelta(days=1)).isoformat()
    response = c.post(
        reverse("portal_key_create", args=[setup.application.pk]),
        {"name": "", "expires_on": past},
    )
    assert response.status_code == 200
    html = _text(response)
    assert 'id="new-key-secret"' not in html
    assert "This field is required." in html and "The expiry date must be in the future." in html


def test_keys_of_someone_elses_application_are_out_of_reach(client, setup):
    c = _login(client, member(DEVELOPER))
    assert (
        c.post(reverse("portal_key_create", args=[setup.application.pk]), {"name": "x"}).status_code
        == 404
    )
    assert c.post(reverse("portal_key_rotate", args=[setup.key.pk])).status_code == 404
    assert c.post(reverse("portal_key_revoke", args=[setup.key.pk])).status_code == 404


def test_rotate_shows_the_new_secret_once_and_the_grace_period(client, setup):
    c = _login(client, setup.developer)
    response = c.post(reverse("portal_key_rotate", args=[setup.key.pk]))
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    html = _text(response)
    secret = re.search(r'id="new-key-secret" value="([^"]+)"', html).group(1)
    assert secret != setup.secret and html.count(secret) == 1
    setup.key.refresh_from_db()
    assert setup.key.grace_ends_at is not None
    assert "keeps working until" in html
    assert timezone.localtime(setup.key.grace_ends_at).strftime("%Y-%m-%d %H:%M") in html
    later = _text(c.get(reverse("portal_application_detail", args=[setup.application.pk])))
    assert secret not in later and 'data-key-status="in grace"' in later


def test_revoke_a_key(client, setup):
    c = _login(client, setup.developer)
    response = c.post(reverse("portal_key_revoke", args=[setup.key.pk]))
    html = _follow_messages(c, response)
    assert "is revoked" in html and 'data-key-status="revoked"' in html
    # again: a message, not a 500
    html = _follow_messages(c, c.post(reverse("portal_key_revoke", args=[setup.key.pk])))
    assert "already revoked" in html


def test_cancel_a_subscription(client, setup):
    c = _login(client, setup.developer)
    response = c.post(reverse("portal_subscription_cancel", args=[setup.subscription.pk]))
    html = _follow_messages(c, response)
    setup.subscription.refresh_from_db()
    assert setup.subscription.state == SubscriptionState.CANCELLED and "cancelled" in html


def _app_page_queries(client, app) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(reverse("portal_application_detail", args=[app.pk])).status_code == 200
    return len(ctx.captured_queries)


def test_application_page_query_count_is_constant(client, setup, django_assert_num_queries):
    c = _login(client, setup.developer)
    few = _app_page_queries(c, setup.application)
    for i in range(5):
        api_key(setup.application, name=f"k{i}")
        other = published_api(setup.pm, slug=f"other-{i}")
        subscription(setup.application, plan(setup.pm, other), decided_by=setup.pm)
    with django_assert_num_queries(few):
        c.get(reverse("portal_application_detail", args=[setup.application.pk]))


def test_application_list_query_count_is_constant(client, django_assert_num_queries):
    dev = member(DEVELOPER)
    c = _login(client, dev)
    application(dev)
    with CaptureQueriesContext(connection) as ctx:
        c.get(reverse("portal_application_list"))
    for _ in range(5):
        application(dev)
    with django_assert_num_queries(len(ctx.captured_queries)):
        c.get(reverse("portal_application_list"))


# --- usage charts ------------------------------------------------------------------------------


def _usage(s, *, at, n=1, outcome="ok", tokens=(10, 5), latency=120, cost="0.001"):
    for _ in range(n):
        UsageRecord.objects.create(
            created_at=at,
            subscription=s.subscription,
            api=s.api,
            application=s.application,
            key=s.key,
            endpoint="chat",
            status_code=200 if outcome == "ok" else 500,
            outcome=outcome,
            tokens_in=tokens[0],
            tokens_out=tokens[1],
            cost=Decimal(cost),
            latency_ms=latency,
        )


def test_usage_charts_with_data_on_the_api_and_application_pages(client, setup):
    now = timezone.now()
    _usage(setup, at=now - dt.timedelta(minutes=5), n=3)
    _usage(setup, at=now - dt.timedelta(hours=3), n=2, outcome="error", latency=900)
    _usage(setup, at=now - dt.timedelta(days=3), n=4)
    for user, url in (
        (setup.pm, reverse("portal_api_detail", args=[setup.api.slug])),
        (setup.developer, reverse("portal_application_detail", args=[setup.application.pk])),
    ):
        html = _text(_login(client, user).get(url))
        assert 'id="usage"' in html and 'data-usage-window="day"' in html
        assert 'data-usage-window="hour"' in html
        assert "<svg" in html and 'data-chart="day-requests"' in html
        assert 'data-chart="hour-latency"' in html
        assert 'data-total="day-requests">9<' in html
        assert 'data-total="hour-requests">5<' in html
        assert 'data-total="day-errors">2<' in html
        assert "data-usage-empty" not in html
        assert '<table class="usage-table">' in html  # the numbers, for screen readers too


# --- the approvers' queue ----------------------------------------------------------------------


@pytest.fixture
def pending(setup):
    pro = plan(setup.pm, setup.api, slug="pro", approval=True)
    dev = member(DEVELOPER)
    sub = subscription(application(dev, "waiting-app"), pro, state="pending")
    sub.justification = "Our helpdesk."
    sub.save()
    return sub


def test_queue_lists_pending_requests_with_counts(client, setup, pending):
    html = _text(_login(client, setup.pm).get(reverse("portal_subscription_queue")))
    assert f'data-subscription="{pending.pk}"' in html
    assert "waiting-app" in html and "Our helpdesk." in html
    assert f'data-api="{setup.api.slug}" data-plan="pro"' in html
    assert f'data-approve="{pending.pk}"' in html
    # the navigation's badge: a slot on the page, filled after load
    assert "data-nav-portal-slot" in html
    badge = _text(_login(client, setup.pm).get(reverse("portal_nav_count")))
    assert "data-nav-portal>1<" in badge


def test_queue_for_someone_who_decides_nothing(client, setup, pending):
    html = _text(_login(client, setup.developer).get(reverse("portal_subscription_queue")))
    assert 'data-empty="queue-not-approver"' in html and "waiting-app" not in html
    assert "data-nav-portal" not in html  # no slot: a developer decides nothing
    assert _text(client.get(reverse("portal_nav_count"))).strip() == ""


def test_approve_from_the_queue(client, setup, pending):
    c = _login(client, setup.pm)
    response = c.post(
        reverse("portal_subscription_approve", args=[pending.pk]),
        {f"approve-{pending.pk}-comment": "Welcome."},
    )
    assert response["Location"] == reverse("portal_subscription_queue")
    html = _follow_messages(c, response)
    assert "Approved" in html and 'data-empty="queue"' in html
    pending.refresh_from_db()
    assert pending.state == SubscriptionState.ACTIVE and pending.decided_by == setup.pm


def test_reject_needs_a_reason(client, setup, pending):
    c = _login(client, setup.pm)
    url = reverse("portal_subscription_reject", args=[pending.pk])
    response = c.post(url, {f"reject-{pending.pk}-reason": "  "})
    assert response.status_code == 400
    html = _text(response)
    assert "Give a reason: the subscriber sees it." in html
    pending.refresh_from_db()
    assert pending.state == SubscriptionState.PENDING
    response = c.post(url, {f"reject-{pending.pk}-reason": "Not for production."})
    assert response.status_code == 302
    pending.refresh_from_db()
    assert pending.state == SubscriptionState.REJECTED
    assert pending.decision_reason == "Not for production."
    # the developer sees the reason on the application's page
    html = _text(
        _login(client, pending.application.owner).get(
            reverse("portal_application_detail", args=[pending.application_id])
        )
    )
    assert "Not for production." in html and 'data-state="rejected"' in html


def test_deciding_is_out_of_reach_for_others(client, setup, pending):
    c = _login(client, member(DEVELOPER))
    assert c.post(reverse("portal_subscription_approve", args=[pending.pk])).status_code == 404
    # the requester sees their subscription, but may not decide it
    c = _login(client, pending.application.owner)
    assert c.post(reverse("portal_subscription_approve", args=[pending.pk])).status_code == 403


def test_suspend_and_resume_from_the_subscribers_list(client, setup):
    c = _login(client, setup.pm)
    sub = setup.subscription
    response = c.post(reverse("portal_subscription_suspend", args=[sub.pk]), {})
    html = _follow_messages(c, response)
    assert "Give a reason" in html
    sub.refresh_from_db()
    assert sub.state == SubscriptionState.ACTIVE
    response = c.post(
        reverse("portal_subscription_suspend", args=[sub.pk]),
        {f"suspend-{sub.pk}-reason": "Abuse.", "next": "https://evil.example/"},
    )
    assert response["Location"].startswith(reverse("portal_api_detail", args=[setup.api.slug]))
    sub.refresh_from_db()
    assert sub.state == SubscriptionState.SUSPENDED
    html = _text(c.get(response["Location"]))
    assert ">Resume</button>" in html
    c.post(reverse("portal_subscription_resume", args=[sub.pk]))
    sub.refresh_from_db()
    assert sub.state == SubscriptionState.ACTIVE


def _queue_queries(client) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(reverse("portal_subscription_queue")).status_code == 200
    return len(ctx.captured_queries)


def test_queue_query_count_is_constant(client, setup, pending, django_assert_num_queries):
    c = _login(client, setup.pm)
    few = _queue_queries(c)
    other = published_api(setup.pm, slug="second")
    gold = plan(setup.pm, other, slug="gold", approval=True)
    for _ in range(5):
        subscription(application(member(DEVELOPER)), gold, state="pending")
    with django_assert_num_queries(few):
        html = _text(c.get(reverse("portal_subscription_queue")))
    assert html.count("data-approve=") == 6


# --- panels on other pages ---------------------------------------------------------------------


def test_product_page_lists_the_published_apis(client, setup):
    html = _text(
        _login(client, setup.pm).get(reverse("product_detail", args=[setup.api.product_id]))
    )
    assert 'id="published-apis"' in html and f'data-api="{setup.api.slug}"' in html
    assert "Publish as an API" in html


def test_change_request_page_shows_the_impact(client, setup):
    from apps.changes import services as changes
    from apps.releases.selectors import release_current
    from tests.changes.helpers import proposal

    baseline = release_current(product=setup.api.product)
    cr = changes.change_request_create(
        actor=setup.pm,
        product=baseline.product,
        title="New prompt",
        rationale="Better.",
        proposed=proposal(setup.pm, baseline),
    )
    html = _text(_login(client, setup.pm).get(reverse("change_detail", args=[cr.pk])))
    assert 'id="change-impact"' in html
    assert "Affects 1 published API and 1 active subscription" in html
    assert f'data-api="{setup.api.slug}"' in html


def test_the_navigation_badge_costs_pages_no_query(
    client, setup, pending, django_assert_num_queries
):
    """GIVEN a product manager with a pending request to decide
    WHEN any page renders THEN the badge is a slot (no query); its fill is one COUNT."""
    c = _login(client, setup.pm)
    c.get(reverse("portal_nav_count"))  # session and user loaded once
    with CaptureQueriesContext(connection) as ctx:
        c.get(reverse("portal_nav_count"))
    counts = [q["sql"] for q in ctx.captured_queries if "COUNT(" in q["sql"].upper()]
    assert len(counts) == 1
