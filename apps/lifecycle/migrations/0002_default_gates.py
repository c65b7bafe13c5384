"""The default stage gates as rows, so admins see and edit them (``GateDefinition``).

The defaults are written out here, not imported, so this migration keeps meaning what it meant
when it landed; ``apps.lifecycle.gates.default_gate`` gives the same for a missing row.
"""

import uuid

from django.db import migrations

CRITERIA = {
    "concept": [],
    "design": ["brief", "assessment"],
    "development": ["team_reviewer"],
    "validation": ["candidate_release", "target_suites_run"],
    "production": ["governed_change", "targets_met"],
    "deprecated": ["sunset_date", "migration_note"],
    "retired": ["sunset_passed"],
}


def seed(apps, schema_editor):
    GateDefinition = apps.get_model("lifecycle", "GateDefinition")
    for risk_class in ("minimal", "limited", "high"):
        for stage, criteria in CRITERIA.items():
            signers = ["reviewer", "admin"]
            criteria = list(criteria)
            if risk_class == "high" and stage == "validation":
                criteria = ["assessment", *criteria]
            if risk_class == "high" and stage == "production":
                signers = ["admin"]
            GateDefinition.objects.get_or_create(
                risk_class=risk_class,
                stage=stage,
                defaults={"id": uuid.uuid4(), "criteria": criteria, "signer_roles": signers},
            )


class Migration(migrations.Migration):
    dependencies = [("lifecycle", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
