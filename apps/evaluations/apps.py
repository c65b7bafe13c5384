from django.apps import AppConfig


class EvaluationsConfig(AppConfig):
    name = "apps.evaluations"
    label = "evaluations"
    verbose_name = "Evaluations"

    def ready(self) -> None:
        # The evaluation gate of change requests: changes asks for it through its registry.
        from apps.changes.gates import Gate, register_gate

        from . import gate, panels

        register_gate(
            Gate(
                name=gate.GATE_NAME,
                label=gate.GATE_LABEL,
                policy_key=gate.POLICY_KEY,
                check=gate.gate_verdict,
                clean=gate.gate_config_clean,
                start=gate.gate_start,
                panel=panels.gate_panel,
                describe=gate.gate_evidence_links,
            )
        )
