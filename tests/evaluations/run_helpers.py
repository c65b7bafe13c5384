"""What the run tests share: a release on the built-in provider, suites, and the worker's steps
called in the test's own process (``test_worker.py`` runs them in real worker processes).

The release of ``tests.factories.release`` renders ``{{ q }}`` as its user message and runs on
the built-in provider ``builtin``/``echo-1``, which answers ``[builtin] <the message>``; so a
``case_dict(key)`` (variables ``{"q": "say <key>"}``, assertion ``contains <key>``) passes, and
a case can be made to fail with an assertion the echo does not satisfy.
"""

from apps.accounts.roles import PRODUCT_MANAGER
from apps.evaluations import runs
from apps.evaluations.models import EvalRun

from ..factories import member, release
from ..playground.factories import builtin
from .factories import case_dict, suite_with_cases


def pm(team=None, **kwargs):
    return member(PRODUCT_MANAGER, team, **kwargs)


def runnable(owner, **release_kwargs):
    """The built-in provider (priced) and a draft release of a new product of ``owner``'s team."""
    from apps.gateway.models import Provider

    if not Provider.objects.filter(slug="builtin").exists():
        builtin()
    return release(owner, **release_kwargs)


def failing_case(key: str, **kw) -> dict:
    """A case the echo fails: it must contain a word it is never asked to say."""
    return case_dict(key, assertions=[{"type": "contains", "value": "nowhere-to-be-seen"}], **kw)


def drain(run: EvalRun, *, worker: str = "") -> int:
    """Run a run's start and its chunks in order, as the worker's chain would; returns how many
    chunks ran."""
    first = runs.eval_run_start(run_id=run.pk, worker=worker)
    if first is None:
        return 0
    start, epoch = first
    chunks = 0
    while start is not None:
        start = runs.eval_run_chunk(run_id=run.pk, start=start, epoch=epoch, worker=worker)
        chunks += 1
    return chunks


def started(owner, rel=None, *, cases=None, concurrency=None, **kwargs) -> EvalRun:
    """A queued run of ``rel`` (a new runnable release) against a new suite of ``cases``."""
    rel = rel or runnable(owner)
    version = suite_with_cases(owner, rel.product.owner_team, cases)
    return runs.eval_run_create(
        actor=owner, suite_version=version, release=rel, concurrency=concurrency, **kwargs
    )


__all__ = ["builtin", "case_dict", "drain", "failing_case", "pm", "runnable", "started"]
