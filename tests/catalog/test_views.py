"""The catalog pages: rendering, forms, permissions, htmx partials and query counts."""

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from apps.accounts.services import membership_add
from apps.audit.models import AuditEvent
from apps.catalog import services as catalog
from apps.catalog.models import (
    Dataset,
    DatasetVersion,
    Model,
    ModelVersion,
    Product,
    PromptTemplate,
    PromptTemplateVersion,
    Stage,
)
from tests.factories import TeamFactory, artifact, member, product, prompt_with_versions

pytestmark = pytest.mark.django_db

KINDS = [("prompt", PromptTemplate), ("model", Model), ("dataset", Dataset)]

# Exact query counts of the list pages, whatever the number of rows (asserted with 3 and 30).
PRODUCT_LIST_QUERIES = 8
PROMPT_LIST_QUERIES = 8
PROMPT_DETAIL_QUERIES = 12


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Users are created with a password in every test; PBKDF2 would dominate the run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def team():
    return TeamFactory()


@pytest.fixture
def pm(team):
    return member("product_manager", team)


@pytest.fixture
def reviewer(team):
    return member("reviewer", team)


@pytest.fixture
def pm_client(client, pm):
    client.force_login(pm)
    return client


@pytest.fixture
def reviewer_client(client, reviewer):
    client.force_login(reviewer)
    return client


@pytest.fixture
def outsider(pm):
    """A product manager of another team, with a product and a prompt of their own."""
    other = member("product_manager")
    product(other, slug="secret-product", name="Secret product")
    prompt_with_versions(other, "Other team's text.")
    return other


def _rows(response) -> int:
    return response.content.decode().count("<tr>") - 1  # minus the header row


def _text(response) -> str:
    return response.content.decode()


# --- navigation and dashboard --------------------------------------------------------------


def test_pages_require_login(client):
    for name in ("dashboard", "product_list", "prompt_list", "model_list", "dataset_list"):
        response = client.get(reverse(name))
        assert response.status_code == 302
        assert response["Location"].startswith("/login/?next=")


def test_navigation_shows_links_and_roles(pm_client):
    html = _text(pm_client.get(reverse("dashboard")))
    for href in ("/products/", "/prompts/", "/models/", "/datasets/", "/tokens/", "/api/docs/"):
        assert f'href="{href}"' in html
    assert "Product manager" in html
    assert 'href="/admin/"' not in html  # not staff


def test_navigation_links_admin_for_staff(client):
    admin = member("admin", is_staff=True)
    client.force_login(admin)
    assert 'href="/admin/"' in _text(client.get(reverse("dashboard")))


def test_dashboard_empty_state(client):
    client.force_login(member("developer"))
    response = client.get(reverse("dashboard"))
    assert response.status_code == 200
    assert "No products yet" in _text(response)
    assert "New product" not in _text(response)


def test_dashboard_lists_products_activity_and_counts(pm_client, pm, outsider):
    """GIVEN a product moved to design and another team's product
    WHEN the PM opens the dashboard
    THEN it shows their product with its stage badge, its history events and counts, and
    nothing of the other team."""
    p = product(pm, name="Helpdesk bot")
    catalog.product_transition(actor=pm, product=p, to_stage=Stage.DESIGN)
    artifact(pm, Model)
    html = _text(pm_client.get(reverse("dashboard")))
    assert "Helpdesk bot" in html
    assert 'class="badge stage-design"' in html
    assert "product.stage_changed" in html
    assert "concept → design" in html
    assert re.search(r'data-count="products">1<', html)
    assert re.search(r'data-count="models">1<', html)
    assert "Secret product" not in html
    assert "secret-product" not in html


# --- products --------------------------------------------------------------------------------


def test_product_list_shows_products_and_create_button(pm_client, pm, outsider):
    product(pm, name="Visible one")
    response = pm_client.get(reverse("product_list"))
    html = _text(response)
    assert response.status_code == 200
    assert "Visible one" in html
    assert "Secret product" not in html
    assert reverse("product_create") in html


def test_reviewer_sees_no_create_buttons(reviewer_client, pm):
    p = product(pm)
    prompt, _ = prompt_with_versions(pm, "Hello.")
    assert reverse("product_create") not in _text(reviewer_client.get(reverse("product_list")))
    assert reverse("product_create") not in _text(reviewer_client.get(reverse("dashboard")))
    for name in ("prompt", "model", "dataset"):
        html = _text(reviewer_client.get(reverse(f"{name}_list")))
        assert reverse(f"{name}_create") not in html
    html = _text(reviewer_client.get(reverse("product_detail", args=[p.pk])))
    assert "Move to" not in html
    html = _text(reviewer_client.get(reverse("prompt_detail", args=[prompt.pk])))
    assert reverse("prompt_version_create", args=[prompt.pk]) not in html


def test_product_search_renders_the_partial_for_htmx(pm_client, pm):
    product(pm, slug="alpha-bot", name="Alpha bot")
    product(pm, slug="beta-bot", name="Beta bot")
    response = pm_client.get(reverse("product_list"), {"q": "alpha"}, HTTP_HX_REQUEST="true")
    html = _text(response)
    assert response.status_code == 200
    assert "<html" not in html
    assert response.templates[0].name == "catalog/partials/product_table.html"
    assert "Alpha bot" in html
    assert "Beta bot" not in html
    assert "HX-Request" in response["Vary"]


def test_product_stage_filter(pm_client, pm):
    product(pm, name="In concept")
    moved = product(pm, name="In design")
    catalog.product_transition(actor=pm, product=moved, to_stage=Stage.DESIGN)
    response = pm_client.get(reverse("product_list"), {"stage": "design"}, HTTP_HX_REQUEST="true")
    assert "In design" in _text(response)
    assert "In concept" not in _text(response)
    full = pm_client.get(reverse("product_list"), {"stage": "design"})
    assert "<html" in _text(full)
    assert '<option value="design" selected>' in _text(full)


def test_product_search_with_no_match_shows_empty_state(pm_client, pm):
    product(pm)
    html = _text(pm_client.get(reverse("product_list"), {"q": "zzz"}, HTTP_HX_REQUEST="true"))
    assert "No matching products" in html


@pytest.mark.parametrize("rows", [3, 30])
def test_product_list_query_count_is_constant(rows, pm, client, django_assert_num_queries):
    for _ in range(rows):
        product(pm)
    client.force_login(pm)
    url = reverse("product_list")
    client.get(url)  # warm process-wide caches (content types)
    with django_assert_num_queries(PRODUCT_LIST_QUERIES):
        response = client.get(url)
    assert _rows(response) == min(rows, 25)


def test_product_list_paginates_by_25(pm_client, pm):
    for _ in range(27):
        product(pm)
    first = pm_client.get(reverse("product_list"))
    assert _rows(first) == 25
    assert "Page 1 of 2" in _text(first)
    second = pm_client.get(reverse("product_list"), {"page": 2}, HTTP_HX_REQUEST="true")
    assert _rows(second) == 2


def test_product_create_offers_only_teams_where_the_user_authors(client, team):
    """GIVEN a product manager of one team who is only a reviewer in another
    THEN the owner-team choice lists the first team only."""
    user = member("product_manager", team)
    elsewhere = TeamFactory(slug="elsewhere")
    membership_add(actor=None, user=user, team=elsewhere, role="reviewer")
    client.force_login(user)
    html = _text(client.get(reverse("product_create")))
    assert f'value="{team.pk}"' in html
    assert f'value="{elsewhere.pk}"' not in html


def test_product_create(pm_client, pm, team):
    response = pm_client.post(
        reverse("product_create"),
        {
            "slug": "support-bot",
            "name": "Support bot",
            "owner_team": team.pk,
            "stage": "concept",
            "risk_class": "limited",
            "intended_use": "Answers questions.",
        },
    )
    created = Product.objects.get(slug="support-bot")
    assert response.status_code == 302
    assert response["Location"] == reverse("product_detail", args=[created.pk])
    assert created.owner_team == team
    assert created.created_by == pm
    assert AuditEvent.objects.filter(verb="product.created", object_id=str(created.pk)).count() == 1


def test_product_create_validation_messages(pm_client, team):
    response = pm_client.post(
        reverse("product_create"),
        {"slug": "Not a slug!", "name": "", "owner_team": team.pk, "stage": "concept"},
    )
    html = _text(response)
    assert response.status_code == 200
    assert "Enter a valid “slug”" in html
    assert "This field is required." in html
    assert not Product.objects.exists()


def test_product_create_duplicate_slug_is_a_form_error(pm_client, pm, team):
    product(pm, slug="taken")
    response = pm_client.post(
        reverse("product_create"),
        {
            "slug": "taken",
            "name": "Again",
            "owner_team": team.pk,
            "stage": "concept",
            "risk_class": "minimal",
        },
    )
    assert response.status_code == 200
    assert "already exists" in _text(response)


def test_product_create_for_another_team_is_refused(pm_client):
    other = TeamFactory()
    response = pm_client.post(
        reverse("product_create"),
        {
            "slug": "sneaky",
            "name": "Sneaky",
            "owner_team": other.pk,
            "stage": "concept",
            "risk_class": "minimal",
        },
    )
    assert response.status_code == 200
    assert "Select a valid choice" in _text(response)
    assert not Product.objects.filter(slug="sneaky").exists()


def test_reviewer_cannot_create_products(reviewer_client, team):
    assert reviewer_client.get(reverse("product_create")).status_code == 403
    response = reviewer_client.post(
        reverse("product_create"),
        {"slug": "nope", "name": "Nope", "owner_team": team.pk, "stage": "concept"},
    )
    assert response.status_code == 403
    assert not Product.objects.filter(slug="nope").exists()


def test_product_detail(pm_client, pm):
    p = product(pm, name="Detail bot", intended_use="Helps people.")
    prompt, _ = prompt_with_versions(pm, "Hi.")
    model = artifact(pm, Model)
    catalog.product_update(actor=pm, product=p, name="Detail bot 2")
    response = pm_client.get(reverse("product_detail", args=[p.pk]))
    html = _text(response)
    assert response.status_code == 200
    assert "Detail bot 2" in html
    assert "Helps people." in html
    # The lifecycle section: the next stages' entry criteria; design's are not met yet (an idea
    # that never reached subscribers may be retired at once).
    assert "Entry criteria of design" in html and "Entry criteria of retired" in html
    assert "Entry criteria of production" not in html
    assert "Request move to design" not in html and "Request move to retired" in html
    assert reverse("prompt_detail", args=[prompt.pk]) in html
    assert reverse("model_detail", args=[model.pk]) in html
    # history: who, what changed
    assert pm.username in html
    assert "created the product" in html
    assert "Detail bot</span> → <span" in html


def test_product_of_another_team_is_404(pm_client, outsider):
    secret = Product.objects.get(slug="secret-product")
    assert pm_client.get(reverse("product_detail", args=[secret.pk])).status_code == 404


# --- artifacts -------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kind"), KINDS)
def test_artifact_list_create_and_detail(name, kind, pm_client, team):
    assert pm_client.get(reverse(f"{name}_list")).status_code == 200
    assert pm_client.get(reverse(f"{name}_create")).status_code == 200
    response = pm_client.post(
        reverse(f"{name}_create"),
        {"slug": f"my-{name}", "name": f"My {name}", "owner_team": team.pk, "description": "D."},
    )
    created = kind.objects.get(slug=f"my-{name}")
    assert response["Location"] == reverse(f"{name}_detail", args=[created.pk])
    detail = pm_client.get(response["Location"])
    assert detail.status_code == 200
    assert "No versions yet" in _text(detail)
    assert reverse(f"{name}_version_create", args=[created.pk]) in _text(detail)
    listing = pm_client.get(reverse(f"{name}_list"))
    assert f"My {name}" in _text(listing)


@pytest.mark.parametrize(("name", "kind"), KINDS)
def test_artifact_create_validation(name, kind, pm_client, pm, team):
    artifact(pm, kind, slug="dup")
    response = pm_client.post(
        reverse(f"{name}_create"), {"slug": "dup", "name": "Dup", "owner_team": team.pk}
    )
    assert response.status_code == 200
    assert "already exists" in _text(response)
    assert kind.objects.filter(slug="dup").count() == 1


@pytest.mark.parametrize(("name", "kind"), KINDS)
def test_reviewer_cannot_create_artifacts_or_versions(name, kind, reviewer_client, pm, team):
    assert reviewer_client.get(reverse(f"{name}_create")).status_code == 403
    response = reviewer_client.post(
        reverse(f"{name}_create"), {"slug": "nope", "name": "Nope", "owner_team": team.pk}
    )
    assert response.status_code == 403
    existing = artifact(pm, kind)
    url = reverse(f"{name}_version_create", args=[existing.pk])
    assert reviewer_client.get(url).status_code == 403
    assert reviewer_client.post(url, {}).status_code == 403
    assert reviewer_client.get(reverse(f"{name}_detail", args=[existing.pk])).status_code == 200


@pytest.mark.parametrize(("name", "kind"), KINDS)
def test_artifact_of_another_team_is_404(name, kind, pm_client):
    other = member("product_manager")
    theirs = artifact(other, kind)
    assert pm_client.get(reverse(f"{name}_detail", args=[theirs.pk])).status_code == 404
    assert pm_client.get(reverse(f"{name}_version_create", args=[theirs.pk])).status_code == 404
    assert pm_client.get(reverse(f"{name}_diff", args=[theirs.pk])).status_code == 404


def test_artifact_search_partial(pm_client, pm):
    artifact(pm, PromptTemplate, name="Greeting prompt")
    artifact(pm, PromptTemplate, name="Summary prompt")
    response = pm_client.get(reverse("prompt_list"), {"q": "greet"}, HTTP_HX_REQUEST="true")
    assert response.templates[0].name == "catalog/partials/artifact_table.html"
    assert "Greeting prompt" in _text(response)
    assert "Summary prompt" not in _text(response)


@pytest.mark.parametrize("rows", [3, 30])
def test_prompt_list_query_count_is_constant(rows, pm, client, django_assert_num_queries):
    for i in range(rows):
        prompt_with_versions(pm, f"Text {i}.", f"Text {i} again.")
    client.force_login(pm)
    url = reverse("prompt_list")
    client.get(url)
    with django_assert_num_queries(PROMPT_LIST_QUERIES):
        response = client.get(url)
    assert _rows(response) == min(rows, 25)
    assert ">v2<" in _text(response)


@pytest.mark.parametrize("rows", [3, 30])
def test_prompt_detail_query_count_is_constant(rows, pm, client, django_assert_num_queries):
    prompt, versions = prompt_with_versions(pm, *[f"Version text {i}." for i in range(rows)])
    client.force_login(pm)
    url = reverse("prompt_detail", args=[prompt.pk])
    client.get(url)
    with django_assert_num_queries(PROMPT_DETAIL_QUERIES):
        response = client.get(url)
    html = _text(response)
    assert _rows(response) == min(rows, 25)
    # newest first, 25 a page, the hash shortened
    numbers = [int(n) for n in re.findall(r"<strong>v(\d+)</strong>", html)]
    assert numbers == list(range(rows, max(rows - 25, 0), -1))
    assert versions[-1].content_hash[:12] in html
    assert f">{versions[-1].content_hash}<" not in html


def test_prompt_detail_paginates_versions(pm_client, pm):
    prompt, _ = prompt_with_versions(pm, *[f"T{i}" for i in range(27)])
    response = pm_client.get(reverse("prompt_detail", args=[prompt.pk]), {"page": 2})
    assert _rows(response) == 2
    assert ">v2<" in _text(response)
    assert ">v1<" in _text(response)


# --- prompt versions -------------------------------------------------------------------------


def _prompt_post(
    messages,
    schema='{"type": "object", "properties": {"q": {"type": "string"}}}',
    parameters="{}",
    changelog="",
    extra_rows=2,
):
    data = {
        "messages-TOTAL_FORMS": str(len(messages) + extra_rows),
        "messages-INITIAL_FORMS": "0",
        "messages-MIN_NUM_FORMS": "0",
        "messages-MAX_NUM_FORMS": "1000",
        "variables_schema": schema,
        "parameters": parameters,
        "changelog": changelog,
    }
    for i, (role, content) in enumerate(messages):
        data[f"messages-{i}-role"] = role
        data[f"messages-{i}-content"] = content
    for i in range(len(messages), len(messages) + extra_rows):
        data[f"messages-{i}-role"] = "user"
        data[f"messages-{i}-content"] = ""
    return data


def test_prompt_version_form_starts_from_the_latest_version(pm_client, pm):
    prompt, _ = prompt_with_versions(pm, "Be brief.")
    response = pm_client.get(reverse("prompt_version_create", args=[prompt.pk]))
    html = _text(response)
    assert response.status_code == 200
    assert "Be brief." in html
    assert "{{ q }}" in html
    assert 'name="messages-TOTAL_FORMS" value="5"' in html  # two messages + three blank rows


def test_prompt_version_create(pm_client, pm):
    prompt = artifact(pm, PromptTemplate)
    response = pm_client.post(
        reverse("prompt_version_create", args=[prompt.pk]),
        _prompt_post(
            [("system", "Line one.\r\nLine two."), ("user", "{{ q }}")],
            parameters='{"temperature": 0.3}',
            changelog="First.",
        ),
    )
    version = PromptTemplateVersion.objects.get(prompt=prompt)
    assert response.status_code == 302
    assert response["Location"] == reverse("prompt_version_detail", args=[version.pk])
    assert version.messages == [
        {"role": "system", "content": "Line one.\nLine two."},
        {"role": "user", "content": "{{ q }}"},
    ]
    assert version.parameters == {"temperature": 0.3}
    assert version.changelog == "First."


def test_prompt_version_invalid_json_is_a_field_error(pm_client, pm):
    prompt = artifact(pm, PromptTemplate)
    response = pm_client.post(
        reverse("prompt_version_create", args=[prompt.pk]),
        _prompt_post([("user", "Hi")], schema='{"type": "object",', parameters="[1]"),
    )
    html = _text(response)
    assert response.status_code == 200
    assert "Not valid JSON" in html
    assert "line 1" in html
    assert "Must be a JSON object" in html
    assert not PromptTemplateVersion.objects.exists()


def test_prompt_version_template_syntax_error_names_the_row(pm_client, pm):
    prompt = artifact(pm, PromptTemplate)
    data = _prompt_post([("system", "Fine."), ("user", "Broken {{ q ")])
    data["messages-0-content"] = ""  # an emptied first row is dropped: the error is on row 2
    data["messages-1-content"] = "Fine."
    data["messages-2-content"] = "Broken {% if %}"
    data["messages-TOTAL_FORMS"] = "4"
    response = pm_client.post(reverse("prompt_version_create", args=[prompt.pk]), data)
    html = _text(response)
    assert response.status_code == 200
    assert "messages[1].content line 1" in html  # the service's message
    row = html[html.index('data-row="2"') : html.index('data-row="3"')]
    assert "errorlist" in row
    assert not PromptTemplateVersion.objects.exists()


def test_prompt_version_undeclared_variable(pm_client, pm):
    prompt = artifact(pm, PromptTemplate)
    response = pm_client.post(
        reverse("prompt_version_create", args=[prompt.pk]),
        _prompt_post([("user", "Hello {{ name }}")], schema='{"type": "object"}'),
    )
    html = _text(response)
    assert "Undeclared: name." in html
    assert "does not declare: name" in html


def test_prompt_version_needs_a_message(pm_client, pm):
    prompt = artifact(pm, PromptTemplate)
    response = pm_client.post(
        reverse("prompt_version_create", args=[prompt.pk]), _prompt_post([], extra_rows=3)
    )
    assert "Give at least one message" in _text(response)


def test_prompt_version_unchanged_content_is_refused(pm_client, pm):
    prompt, _ = prompt_with_versions(pm, "Same.")
    response = pm_client.post(
        reverse("prompt_version_create", args=[prompt.pk]),
        _prompt_post(
            [("system", "Same."), ("user", "{{ q }}")],
            schema='{"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}',
        ),
    )
    assert response.status_code == 200
    assert "same content" in _text(response)
    assert PromptTemplateVersion.objects.filter(prompt=prompt).count() == 1


# --- model and dataset versions --------------------------------------------------------------


def _dataset_version(pm, rows=b'{"a": 1}\n{"a": 2}\n'):
    dataset = artifact(pm, Dataset)
    version = catalog.dataset_version_create(
        actor=pm, dataset=dataset, file=SimpleUploadedFile("d.jsonl", rows)
    )
    return dataset, version


def test_model_version_create_with_lineage(pm_client, pm):
    model = artifact(pm, Model)
    _, dv = _dataset_version(pm)
    url = reverse("model_version_create", args=[model.pk])
    form = _text(pm_client.get(url))
    assert str(dv) in form
    response = pm_client.post(
        url,
        {
            "provider": "builtin",
            "provider_model": "echo-1",
            "parameters": '{"temperature": 0.1}',
            "base_model": "llama",
            "finetuning_datasets": [dv.pk],
            "model_card": '{"limitations": "Echoes."}',
            "changelog": "First.",
        },
    )
    version = ModelVersion.objects.get(model=model)
    assert response["Location"] == reverse("model_version_detail", args=[version.pk])
    assert version.parameters == {"temperature": 0.1}
    assert [link.dataset_version for link in version.lineage.all()] == [dv]
    detail = _text(pm_client.get(response["Location"]))
    assert "finetuning" in detail
    assert "echo-1" in detail
    assert "Echoes." in detail


def test_model_version_invalid_input(pm_client, pm):
    model = artifact(pm, Model)
    response = pm_client.post(
        reverse("model_version_create", args=[model.pk]),
        {"provider": "", "provider_model": "", "parameters": "{nope", "model_card": ""},
    )
    html = _text(response)
    assert response.status_code == 200
    assert "This field is required." in html
    assert "Not valid JSON" in html
    assert not ModelVersion.objects.exists()


def test_dataset_version_upload(pm_client, pm):
    dataset = artifact(pm, Dataset)
    upload = SimpleUploadedFile("faq.jsonl", b'{"q": "a", "n": 1}\n{"q": "b", "n": 2}\n')
    response = pm_client.post(
        reverse("dataset_version_create", args=[dataset.pk]),
        {
            "file": upload,
            "source": "export",
            "licence": "CC-BY-4.0",
            "pii_class": "none",
            "retention_until": "2030-01-31",
        },
    )
    version = DatasetVersion.objects.get(dataset=dataset)
    assert response["Location"] == reverse("dataset_version_detail", args=[version.pk])
    assert version.row_count == 2
    assert version.format == "jsonl"
    assert str(version.retention_until) == "2030-01-31"
    detail = _text(pm_client.get(response["Location"]))
    assert version.sha256 in detail
    assert "CC-BY-4.0" in detail
    assert "<code>n</code>" in detail


def test_dataset_version_malformed_file_names_the_line(pm_client, pm):
    dataset = artifact(pm, Dataset)
    upload = SimpleUploadedFile("bad.jsonl", b'{"q": "a"}\n{"q": \n')
    response = pm_client.post(
        reverse("dataset_version_create", args=[dataset.pk]),
        {"file": upload, "pii_class": "none"},
    )
    html = _text(response)
    assert response.status_code == 200
    assert "line 2: not valid JSON" in html
    assert not DatasetVersion.objects.exists()


def test_dataset_version_needs_a_file_or_uri(pm_client, pm):
    dataset = artifact(pm, Dataset)
    url = reverse("dataset_version_create", args=[dataset.pk])
    response = pm_client.post(url, {"pii_class": "none"})
    assert "Upload a file or give a uri." in _text(response)
    response = pm_client.post(url, {"uri": "s3://bucket/data.csv", "pii_class": "personal"})
    version = DatasetVersion.objects.get(dataset=dataset)
    assert response.status_code == 302
    assert version.uri == "s3://bucket/data.csv"
    assert version.pii_class == "personal"


def test_dataset_version_parent_defaults_to_latest(pm_client, pm):
    dataset, v1 = _dataset_version(pm)
    html = _text(pm_client.get(reverse("dataset_version_create", args=[dataset.pk])))
    assert f'<option value="{v1.pk}" selected>' in html


# --- version detail, deprecation, render preview -------------------------------------------


def test_prompt_version_detail(pm_client, pm):
    _, (v1, v2) = prompt_with_versions(pm, "Old text.", "New text.")
    html = _text(pm_client.get(reverse("prompt_version_detail", args=[v2.pk])))
    assert "New text." in html
    assert v2.content_hash in html
    assert pm.username in html
    assert "Deprecate this version" in html
    assert f"?from={v1.pk}&amp;to={v2.pk}" in html
    assert reverse("prompt_version_render", args=[v2.pk]) in html


def test_version_of_another_team_is_404(pm_client):
    other = member("product_manager")
    _, (theirs,) = prompt_with_versions(other, "Theirs.")
    assert pm_client.get(reverse("prompt_version_detail", args=[theirs.pk])).status_code == 404
    url = reverse("prompt_version_render", args=[theirs.pk])
    assert pm_client.post(url, {"variables": "{}"}).status_code == 404


def test_deprecate_version(pm_client, pm):
    _, (v1,) = prompt_with_versions(pm, "Text.")
    url = reverse("prompt_version_deprecate", args=[v1.pk])
    missing_reason = pm_client.post(url, {"reason": ""})
    assert missing_reason.status_code == 200
    assert "This field is required." in _text(missing_reason)
    response = pm_client.post(url, {"reason": "Leaks the system prompt."}, follow=True)
    v1.refresh_from_db()
    assert v1.deprecated_at is not None
    assert v1.deprecation_reason == "Leaks the system prompt."
    html = _text(response)
    assert "is deprecated" in html
    assert "Leaks the system prompt." in html
    again = pm_client.post(url, {"reason": "Again."}, follow=True)
    assert "already deprecated" in _text(again)


def test_reviewer_cannot_deprecate(reviewer_client, pm):
    _, (v1,) = prompt_with_versions(pm, "Text.")
    html = _text(reviewer_client.get(reverse("prompt_version_detail", args=[v1.pk])))
    assert "Deprecate this version" not in html
    url = reverse("prompt_version_deprecate", args=[v1.pk])
    assert reviewer_client.post(url, {"reason": "Because."}).status_code == 403
    v1.refresh_from_db()
    assert v1.deprecated_at is None


def test_render_preview_partial(pm_client, pm):
    _, (v1,) = prompt_with_versions(pm, "You help {{ q }}.")
    url = reverse("prompt_version_render", args=[v1.pk])
    response = pm_client.post(url, {"variables": '{"q": "Ada"}'}, HTTP_HX_REQUEST="true")
    html = _text(response)
    assert response.status_code == 200
    assert "<html" not in html
    assert "data-rendered" in html
    assert "You help Ada." in html
    missing = _text(pm_client.post(url, {"variables": "{}"}, HTTP_HX_REQUEST="true"))
    assert "data-render-error" in missing
    assert "&#x27;q&#x27; is a required property" in missing
    bad = _text(pm_client.post(url, {"variables": "{oops"}, HTTP_HX_REQUEST="true"))
    assert "Not valid JSON" in bad


def test_render_preview_without_htmx_renders_the_page(reviewer_client, pm):
    _, (v1,) = prompt_with_versions(pm, "Hi {{ q }}!")
    response = reviewer_client.post(
        reverse("prompt_version_render", args=[v1.pk]), {"variables": '{"q": "Bo"}'}
    )
    assert "<html" in _text(response)
    assert "Hi Bo!" in _text(response)


@pytest.mark.parametrize("name", ["model", "dataset"])
def test_model_and_dataset_version_detail(name, pm_client, pm):
    if name == "dataset":
        _, version = _dataset_version(pm)
    else:
        model = artifact(pm, Model)
        version = catalog.model_version_create(
            actor=pm, model=model, provider="builtin", provider_model="echo-1"
        )
    response = pm_client.get(reverse(f"{name}_version_detail", args=[version.pk]))
    assert response.status_code == 200
    assert version.content_hash in _text(response)


# --- diff ------------------------------------------------------------------------------------


def test_prompt_diff_defaults_to_the_last_two_versions(pm_client, pm):
    prompt, _ = prompt_with_versions(pm, "First text.", "Second text.", "Third text.")
    response = pm_client.get(reverse("prompt_diff", args=[prompt.pk]))
    html = _text(response)
    assert response.status_code == 200
    assert "v2 → v3" in html
    assert re.search(
        r'<tr class="diff-del"><td class="marker">-</td><td class="text">Second text\.<', html
    )
    assert re.search(
        r'<tr class="diff-add"><td class="marker">\+</td><td class="text">Third text\.<', html
    )
    assert "First text." not in html


def test_prompt_diff_with_version_pickers(pm_client, pm):
    prompt, (v1, _, v3) = prompt_with_versions(pm, "Alpha.", "Beta.", "Gamma.")
    response = pm_client.get(reverse("prompt_diff", args=[prompt.pk]), {"from": v1.pk, "to": v3.pk})
    html = _text(response)
    assert "v1 → v3" in html
    assert re.search(r'class="diff-del">.*Alpha\.', html)
    assert re.search(r'class="diff-add">.*Gamma\.', html)
    assert f'<option value="{v1.pk}" selected>' in html


def test_prompt_diff_with_only_one_side_compares_against_the_latest(pm_client, pm):
    prompt, (v1, _, _) = prompt_with_versions(pm, "Alpha.", "Beta.", "Gamma.")
    html = _text(pm_client.get(reverse("prompt_diff", args=[prompt.pk]), {"from": v1.pk}))
    assert "v1 → v3" in html


def test_prompt_diff_of_identical_versions(pm_client, pm):
    prompt, (v1, _) = prompt_with_versions(pm, "A.", "B.")
    response = pm_client.get(reverse("prompt_diff", args=[prompt.pk]), {"from": v1.pk, "to": v1.pk})
    assert "have the same content" in _text(response)


def test_prompt_diff_refuses_foreign_or_bad_ids(pm_client, pm):
    prompt, (v1, _) = prompt_with_versions(pm, "A.", "B.")
    _, (elsewhere,) = prompt_with_versions(pm, "C.")  # another prompt of the same team
    url = reverse("prompt_diff", args=[prompt.pk])
    assert pm_client.get(url, {"from": v1.pk, "to": elsewhere.pk}).status_code == 404
    assert pm_client.get(url, {"from": "nope", "to": v1.pk}).status_code == 404


def test_prompt_diff_with_one_version(pm_client, pm):
    prompt, _ = prompt_with_versions(pm, "Only.")
    assert "Nothing to compare yet" in _text(
        pm_client.get(reverse("prompt_diff", args=[prompt.pk]))
    )


def test_model_diff(pm_client, pm):
    model = artifact(pm, Model)
    for name in ("echo-1", "echo-2"):
        catalog.model_version_create(actor=pm, model=model, provider="builtin", provider_model=name)
    html = _text(pm_client.get(reverse("model_diff", args=[model.pk])))
    assert re.search(r'class="diff-del">.*echo-1', html)
    assert re.search(r'class="diff-add">.*echo-2', html)
