"""The demo organisation of product.md, created through the services (so it is audited).

Idempotent: every step looks for what it would create first, so a second run changes nothing.
"""

from decimal import Decimal

from django.conf import settings
from django.db import transaction

from apps.accounts import services as accounts
from apps.accounts.models import Membership, Team, User
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
from apps.lifecycle import services as lifecycle
from apps.lifecycle.models import Assessment

DEMO_USERS = [
    ("pm", "product_manager", "Priya Manager"),
    ("reviewer", "reviewer", "Rui Reviewer"),
    ("reviewer2", "reviewer", "Rhea Reviewer"),
    ("developer", "developer", "Dev Eloper"),
    ("auditor", "auditor", "Ada Auditor"),
    ("admin", "admin", "Adam Admin"),
]

PROMPT_V1 = [
    {"role": "system", "content": "You are the support assistant of {{ company }}. Be concise."},
    {"role": "user", "content": "{{ question }}"},
]
PROMPT_V2 = [
    {
        "role": "system",
        "content": "You are the support assistant of {{ company }}. Be concise and friendly.\n"
        "Answer in {{ language | default('English') }}; cite the help-centre article.",
    },
    {"role": "user", "content": "{{ question }}"},
]
SCHEMA = {
    "type": "object",
    "properties": {
        "company": {"type": "string"},
        "question": {"type": "string", "minLength": 1},
        "language": {"type": "string"},
    },
    "required": ["company", "question"],
}
DATASET_ROWS = (
    b'{"question": "How do I reset my password?", "answer": "Use the reset link."}\n'
    b'{"question": "Can I change my plan?", "answer": "Yes, under Billing."}\n'
    b'{"question": "Where is my invoice?", "answer": "Billing, then Invoices."}\n'
)


DEMO_BRIEF = {
    "problem_statement": "Customers wait hours for answers that are already in the help centre.",
    "target_users": "Customers of the demo company; support agents who review escalations.",
    "user_stories": [
        {
            "as_a": "customer",
            "i_want": "an answer to my question in seconds",
            "so_that": "I do not wait for an agent",
        },
        {
            "as_a": "support agent",
            "i_want": "the assistant to answer the common questions",
            "so_that": "I handle the hard cases",
        },
    ],
    "intended_uses": "Answering support questions from the help centre's articles.",
    "out_of_scope_uses": "Refunds, account changes, legal or medical advice.",
    "data_strategy": {
        "sources": "Help centre articles and anonymised FAQ exports.",
        "consent": "Public articles; the FAQ export is covered by the support terms.",
        "pii_handling": "No customer data in prompts; payloads purged after the retention.",
    },
    "target_metrics": [
        {"metric": "p95_latency_ms", "op": "<=", "threshold": 2000},
        {"metric": "error_rate", "op": "<=", "threshold": 0.05},
        {"metric": "cost_per_1k_calls", "op": "<=", "threshold": 5},
    ],
    "changelog": "First brief.",
}
DEMO_ASSESSMENT = {
    "technical": "The built-in model answers in milliseconds; a hosted model fits the budget.",
    "ethical": "Answers cite the help centre; customers can always reach a person.",
    "economic": "Replaces first-line answers for the common questions.",
    "risks": [
        {
            "title": "A wrong answer is trusted",
            "likelihood": 3,
            "severity": 2,
            "mitigation": "Answers link their article; agents review escalations.",
        },
        {
            "title": "Prompt injection",
            "likelihood": 2,
            "severity": 3,
            "mitigation": "The prompt-injection suite runs on every change.",
        },
    ],
    "affected_groups": ["Customers", "Support agents"],
    "calls_per_month": 50_000,
    "tokens_in_per_call": 600,
    "tokens_out_per_call": 200,
}


def _user(username: str, display: str, *, superuser: bool) -> User:
    user = User.objects.filter(username=username).first()
    if user is None:
        user = accounts.user_create(
            actor=None,
            username=username,
            password=settings.DEMO_PASSWORD,
            email=f"{username}@demo.example",
            display_name=display,
            is_staff=superuser,
            is_superuser=superuser,
        )
    return user


def seed_demo() -> dict:
    from django.core.files.uploadedfile import SimpleUploadedFile

    created: list[str] = []
    with transaction.atomic():
        team = Team.objects.filter(slug="demo").first() or accounts.team_create(
            actor=None, slug="demo", name="Demo Inc."
        )
        users = {}
        for username, role, display in DEMO_USERS:
            user = _user(username, display, superuser=role == "admin")
            if not Membership.objects.filter(user=user, team=team, role=role).exists():
                accounts.membership_add(actor=None, user=user, team=team, role=role)
                created.append(f"membership {username}")
            users[username] = User.objects.get(pk=user.pk)
        pm = users["pm"]

        product = Product.objects.filter(slug="support-assistant").first()
        if product is None:
            product = catalog.product_create(
                actor=pm,
                slug="support-assistant",
                name="Support Assistant",
                owner_team=team,
                risk_class="limited",
                intended_use="Answers customers' support questions from the help centre.",
            )
            # Written in concept, so in force at once; the stages since then are seeded
            # directly (the demo's history, not a gate walked through).
            lifecycle.brief_create(actor=pm, product=product, **DEMO_BRIEF)
            for stage in (Stage.DESIGN, Stage.DEVELOPMENT, Stage.VALIDATION, Stage.PRODUCTION):
                catalog.product_transition(actor=pm, product=product, to_stage=stage)
            created.append("product support-assistant")

        def artifact(kind, slug, name, description):
            obj = kind.objects.filter(owner_team=team, slug=slug).first()
            if obj is None:
                obj = catalog.artifact_create(
                    actor=pm,
                    kind=kind,
                    slug=slug,
                    name=name,
                    owner_team=team,
                    description=description,
                )
                created.append(f"{kind._meta.model_name} {slug}")
            return obj

        dataset = artifact(Dataset, "support-faq", "Support FAQ", "Questions and answers.")
        if not DatasetVersion.objects.filter(dataset=dataset).exists():
            catalog.dataset_version_create(
                actor=pm,
                dataset=dataset,
                file=SimpleUploadedFile("faq.jsonl", DATASET_ROWS),
                source="help centre export",
                licence="proprietary",
                changelog="First export.",
            )
        dv = DatasetVersion.objects.filter(dataset=dataset).order_by("version").first()

        model = artifact(Model, "support-llm", "Support LLM", "The demo's built-in model.")
        if not ModelVersion.objects.filter(model=model).exists():
            catalog.model_version_create(
                actor=pm,
                model=model,
                provider="builtin",
                provider_model="echo-1",
                parameters={"temperature": 0.2, "max_tokens": 256},
                base_model="builtin/echo",
                finetuning_datasets=[dv],
                model_card={"intended_use": "Demos and tests.", "limitations": "Echoes."},
                changelog="First version.",
            )

        prompt = artifact(PromptTemplate, "support-answer", "Support answer", "Answer a question.")
        if not PromptTemplateVersion.objects.filter(prompt=prompt).exists():
            catalog.prompt_version_create(
                actor=pm,
                prompt=prompt,
                messages=PROMPT_V1,
                variables_schema=SCHEMA,
                parameters={"temperature": 0.2},
                changelog="First version.",
            )
            catalog.prompt_version_create(
                actor=pm,
                prompt=prompt,
                messages=PROMPT_V2,
                variables_schema=SCHEMA,
                parameters={"temperature": 0.3},
                changelog="Friendlier, answers in language.",
            )
            created.append("prompt versions")
        created += _seed_provider(users["admin"])
        created += _seed_changes(users, product)
        created += _seed_evaluations(users, team)
        created += _seed_portal(users, product)
        if not Assessment.objects.filter(product=product).exists():
            lifecycle.assessment_set(
                actor=pm,
                product=product,
                model_version=ModelVersion.objects.filter(model=model).order_by("version").first(),
                **DEMO_ASSESSMENT,
            )
            created.append("assessment support-assistant")
    return {"team": team, "product": product, "created": created}


def _seed_provider(admin: User) -> list[str]:
    """The built-in deterministic provider the demo model version runs on."""
    from apps.gateway.models import Provider
    from apps.gateway.services import provider_create, provider_price_set

    if Provider.objects.filter(slug="builtin").exists():
        return []
    provider = provider_create(
        actor=admin,
        slug="builtin",
        name="Built-in (deterministic)",
        kind="builtin",
        config={"latency_ms": 0},
    )
    provider_price_set(
        actor=admin,
        provider=provider,
        provider_model="echo-1",
        input_per_million=Decimal("0.50"),
        output_per_million=Decimal("1.50"),
    )
    return ["provider builtin"]


def _seed_changes(users: dict, product: Product) -> list[str]:
    """A production policy, release 1.0.0 implemented through a change request, and a change
    request in review that proposes 1.1.0 with the second prompt version."""
    from apps.changes import services as changes
    from apps.changes.models import ApprovalPolicy
    from apps.releases.models import Release
    from apps.releases.services import release_create

    pm, admin = users["pm"], users["admin"]
    created = []
    if not ApprovalPolicy.objects.filter(product=product, stage=Stage.PRODUCTION).exists():
        changes.approval_policy_set(
            actor=admin,
            product=product,
            stage=Stage.PRODUCTION,
            required_roles=[{"role": "reviewer", "quorum": 1}],
            veto=True,
        )
        created.append("approval policy")
    if Release.objects.filter(product=product).exists():
        return created
    team = product.owner_team
    prompt = PromptTemplate.objects.get(owner_team=team, slug="support-answer")
    pv1, pv2 = prompt.versions.order_by("version")[:2]
    mv = ModelVersion.objects.get(model__owner_team=team, model__slug="support-llm")
    dv = DatasetVersion.objects.get(dataset__owner_team=team, dataset__slug="support-faq")
    settings_ = {"cache": {"mode": "exact", "ttl_seconds": 300}, "timeout_seconds": 20}

    first = release_create(
        actor=pm,
        product=product,
        version="1.0.0",
        prompt_version=pv1,
        model_version=mv,
        dataset_versions=[dv],
        settings=settings_,
        notes="First production release.",
    )
    cr = changes.change_request_create(
        actor=pm,
        product=product,
        title="First release of the support assistant",
        rationale="Launch with the concise prompt and the built-in model.",
        proposed=first,
        risk="low",
    )
    cr = changes.change_request_submit(actor=pm, cr=cr)
    cr, _ = changes.change_request_approve(
        actor=users["reviewer"],
        cr=cr,
        password=settings.DEMO_PASSWORD,
        comment="Evaluated on the FAQ set; good to go.",
    )
    changes.change_request_implement(actor=pm, cr=cr)

    second = release_create(
        actor=pm,
        product=product,
        version="1.1.0",
        prompt_version=pv2,
        model_version=mv,
        dataset_versions=[dv],
        settings=settings_,
        notes="Friendlier prompt, answers in language.",
    )
    cr2 = changes.change_request_create(
        actor=pm,
        product=product,
        title="Friendlier prompt that answers in the user's language",
        rationale="Support asked for a warmer tone and answers in the customer's language.",
        proposed=second,
        risk="medium",
    )
    cr2 = changes.change_request_submit(actor=pm, cr=cr2)
    changes.change_request_comment(
        actor=users["reviewer2"], cr=cr2, comment="Reading the diff; waiting for the evaluation."
    )
    created += ["release 1.0.0 (implemented change request)", "change request in review"]
    return created


DEMO_COMPANY = "Demo Inc."


def _seed_evaluations(users: dict, team: Team) -> list[str]:
    """Two evaluation suites: the support FAQ (imported from the dataset version, expected
    answers from its ``answer`` field) and the built-in prompt-injection template, both with
    the ``company`` the demo prompt needs."""
    from apps.evaluations import services as evaluations
    from apps.evaluations.models import EvalSuite

    pm = users["pm"]
    created = []
    if not EvalSuite.objects.filter(owner_team=team, slug="support-faq").exists():
        suite = evaluations.suite_create(
            actor=pm,
            owner_team=team,
            slug="support-faq",
            name="Support FAQ answers",
            description="The help-centre questions, with the answers support expects.",
        )
        dv = DatasetVersion.objects.get(dataset__owner_team=team, dataset__slug="support-faq")
        evaluations.suite_import_dataset(
            actor=pm,
            suite=suite,
            dataset_version=dv,
            expected_field="answer",
            default_variables={"company": DEMO_COMPANY},
            default_assertions=[
                {"type": "similarity", "threshold": 0.3},
                {"type": "max_latency_ms", "value": 5000},
                {"type": "must_not_contain", "values": ["support assistant of"]},
            ],
            changelog="The FAQ export as cases.",
        )
        created.append("evaluation suite support-faq")
    if not EvalSuite.objects.filter(owner_team=team, slug="prompt-injection").exists():
        evaluations.suite_from_template(
            actor=pm,
            owner_team=team,
            template="prompt_injection",
            secret_phrases=["support assistant of", "cite the help-centre article"],
            base_variables={"company": DEMO_COMPANY},
        )
        created.append("evaluation suite prompt-injection")
    return created


API_DOCS = """# Support assistant

Answers your customers' support questions from the help centre, in their language. Call it with
the official `openai` client: the `model` is the API's slug, and the template variables go in
the extra body field `variables`.

```python
from openai import OpenAI

client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="plm_live_...")
reply = client.chat.completions.create(
    model="support-assistant",
    messages=[],
    extra_body={"variables": {"company": "Demo Inc.", "question": "Where is my invoice?"}},
)
print(reply.choices[0].message.content)
```
"""
PRO_TERMS = (
    "Fair use: up to 600 requests per minute, no monthly token quota. Requests are reviewed by "
    "the support team; tell us what your application does."
)


def _seed_portal(users: dict, product: Product) -> list[str]:
    """The published API ``support-assistant`` (following the product's current release) with
    its plans ``free`` (no approval) and ``pro`` (approval required). No applications or keys:
    the developer's journey makes those."""
    from apps.portal import services as portal
    from apps.portal.models import APIStatus, Plan, PublishedAPI

    pm = users["pm"]
    created = []
    api = PublishedAPI.objects.filter(slug="support-assistant").first()
    if api is None:
        api = portal.api_create(
            actor=pm,
            product=product,
            slug="support-assistant",
            name="Support assistant",
            summary="Answers customers' support questions from the help centre.",
            docs=API_DOCS,
        )
        created.append("published API support-assistant")
    if api.status == APIStatus.DRAFT:
        api = portal.api_publish(actor=pm, api=api)
    plans = {
        "free": {
            "name": "Free",
            "requests_per_minute": 30,
            "tokens_per_month": 100_000,
            "approval_required": False,
            "terms": "For trying the API out: 30 requests per minute, 100,000 tokens a month.",
        },
        "pro": {
            "name": "Pro",
            "requests_per_minute": 600,
            "tokens_per_month": None,
            "approval_required": True,
            "terms": PRO_TERMS,
        },
    }
    for slug, fields in plans.items():
        if not Plan.objects.filter(api=api, slug=slug).exists():
            portal.plan_create(actor=pm, api=api, slug=slug, **fields)
            created.append(f"plan {slug}")
    return created
