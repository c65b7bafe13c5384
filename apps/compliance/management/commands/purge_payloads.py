"""``manage.py purge_payloads [--dry-run]``: clear payloads older than PAYLOAD_RETENTION_DAYS."""

from django.core.management.base import BaseCommand

from apps.compliance.retention import purge_payloads


class Command(BaseCommand):
    help = (
        "Clear provider-call payloads (and playground, batch and evaluation texts) older than "
        "PAYLOAD_RETENTION_DAYS (at least 180); keeps the metadata; records payloads.purged."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be cleared; change nothing."
        )

    def handle(self, *args, dry_run=False, **options):
        report = purge_payloads(dry_run=dry_run)
        what = "would clear" if dry_run else "cleared"
        counts = ", ".join(f"{key} {n}" for key, n in report.counts.items())
        self.stdout.write(
            f"Payloads older than {report.retention_days} days (before "
            f"{report.cutoff:%Y-%m-%d %H:%M} UTC): {what} {counts}."
            + (f" Audit event #{report.audit_seq}." if report.audit_seq else "")
        )
