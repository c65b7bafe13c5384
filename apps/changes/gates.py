"""Gates: conditions other than signatures that a change must meet before it is approved and
implemented (the evaluation gate is one), without this app importing the apps that judge them.

An app registers a ``Gate`` in its ``AppConfig.ready``. The change-request services then

- clean the gate's policy setting when a policy is set (``clean``: a 400 on bad input);
- start the gate's work when a change is submitted (``start``), inside the submit transaction
  (a gate defers its own side effects, such as Celery tasks, to the commit);
- ask for its verdict before a signature and before implementing (``check``): an approval and an
  implementation are refused with a 409 while a required gate has not passed
  (``gate_pending``, ``gate_failed``), and each signature stores the verdicts' evidence;
- show it on the change-request page (``panel``: a template and its context), polled by htmx
  while the verdict is pending.

``check`` and ``panel`` get the policy the change is judged by (the copy taken at submit, else
the one in force) and must not write.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from apps.core.exceptions import Conflict

NOT_REQUIRED = "not_required"
NOT_STARTED = "not_started"
PENDING = "pending"
PASSED = "passed"
FAILED = "failed"


@dataclass
class GateVerdict:
    """What a gate says about one change request now.

    ``state`` is one of not_required, not_started (a draft: nothing has run), pending, passed,
    failed; ``reasons`` say why it has not passed, one sentence each; ``evidence`` is what the
    decision rests on (stored with each signature, so JSON-ready)."""

    name: str
    label: str
    state: str
    reasons: list[str] = field(default_factory=list)
    evidence: dict = field(default_factory=dict)
    detail: Any = None  # the gate's own figures, for its panel (not stored)

    @property
    def required(self) -> bool:
        return self.state != NOT_REQUIRED

    @property
    def passed(self) -> bool:
        return self.state in (NOT_REQUIRED, PASSED)

    @property
    def pending(self) -> bool:
        return self.state == PENDING

    @property
    def blocking(self) -> bool:
        return not self.passed

    def summary(self) -> str:
        """One sentence for people: why the gate holds the change back (empty when it does
        not)."""
        if self.passed:
            return ""
        head = {
            PENDING: f"The {self.label} has not passed yet",
            NOT_STARTED: f"The {self.label} has not started",
        }.get(self.state, f"The {self.label} failed")
        why = "; ".join(self.reasons)
        return f"{head}: {why}." if why else f"{head}."


@dataclass(frozen=True)
class Gate:
    name: str  # stable key of the evidence, e.g. "evaluation"
    label: str  # for messages, e.g. "evaluation gate"
    policy_key: str  # the ApprovalPolicy field it reads, e.g. "evaluation_gate"
    check: Callable[..., GateVerdict]  # (*, cr, config) -> GateVerdict
    clean: Callable[..., Any] | None = None  # (*, product, value) -> cleaned value
    start: Callable[..., None] | None = None  # (*, cr, actor, config) -> None
    panel: Callable[..., dict | None] | None = None  # (*, request, cr, verdict) -> dict
    describe: Callable[[dict], list[dict]] | None = None  # evidence -> [{label, url}]


_gates: dict[str, Gate] = {}


def register_gate(gate: Gate) -> Gate:
    _gates[gate.name] = gate
    return gate


def registered_gates() -> list[Gate]:
    return list(_gates.values())


def gate_for_policy_key(policy_key: str) -> Gate | None:
    return next((g for g in _gates.values() if g.policy_key == policy_key), None)


def gate_verdicts(cr, policy: dict) -> list[GateVerdict]:
    """Every registered gate's verdict on ``cr`` under ``policy``."""
    return [gate.check(cr=cr, config=policy.get(gate.policy_key)) for gate in _gates.values()]


def gates_start(cr, actor, policy: dict) -> None:
    """Start the work of the gates ``policy`` configures (on submit)."""
    for gate in _gates.values():
        config = policy.get(gate.policy_key)
        if config and gate.start is not None:
            gate.start(cr=cr, actor=actor, config=config)


def evidence_links(evidence: dict) -> list[dict]:
    """What a signature's evidence names, by gate: ``[{gate, label, state, links: [{label,
    url}]}]`` (links from the gate's ``describe``)."""
    out = []
    for name, item in (evidence or {}).items():
        gate = _gates.get(name)
        if not isinstance(item, dict):
            continue
        links = gate.describe(item) if gate is not None and gate.describe is not None else []
        out.append(
            {
                "gate": name,
                "label": gate.label if gate is not None else name,
                "state": item.get("state", ""),
                "state_label": str(item.get("state", "")).replace("_", " "),
                "links": links,
            }
        )
    return out


def evidence_of(verdicts: list[GateVerdict]) -> dict:
    """What a signature stores: each required gate's state and evidence, by gate name."""
    return {
        v.name: {"state": v.state, **v.evidence, "reasons": v.reasons}
        for v in verdicts
        if v.required
    }


def gates_require(cr, policy: dict, *, doing: str) -> list[GateVerdict]:
    """The verdicts, or a 409 when a required gate has not passed; ``doing`` names the refused
    action for the message ("approve", "implement")."""
    verdicts = gate_verdicts(cr, policy)
    blocking = [v for v in verdicts if v.blocking]
    if not blocking:
        return verdicts
    pending_only = all(v.state in (PENDING, NOT_STARTED) for v in blocking)
    code = "gate_pending" if pending_only else "gate_failed"
    if pending_only:
        advice = f"You can {doing} it once the gate has passed."
    else:
        done = "approved" if doing == "approve" else "implemented"
        advice = (
            f"It cannot be {done} as it is: fix the proposed release and submit the change "
            "again, or reject it."
        )
    raise Conflict(code, " ".join(v.summary() for v in blocking) + " " + advice)


def gate_panels(request, cr, verdicts: list[GateVerdict]) -> list[dict]:
    """The sections the gates add to the change-request page, in order."""
    panels = []
    for verdict in verdicts:
        gate = _gates.get(verdict.name)
        if gate is None or gate.panel is None:
            continue
        panel = gate.panel(request=request, cr=cr, verdict=verdict)
        if panel:
            panels.append(panel)
    return sorted(panels, key=lambda p: p.get("order", 100))
