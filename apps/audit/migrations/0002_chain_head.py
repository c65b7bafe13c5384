from django.db import migrations


def create_head(apps, schema_editor):
    """The chain head exists from the start, so the first two concurrent events cannot both
    try to create it (every append locks this row)."""
    head = apps.get_model("audit", "AuditChainHead")
    head.objects.get_or_create(id=1)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunPython(create_head, migrations.RunPython.noop)]
