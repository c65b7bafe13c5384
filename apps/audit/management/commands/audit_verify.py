import json

from django.core.management.base import BaseCommand, CommandError

from apps.audit.services import chain_verify


class Command(BaseCommand):
    help = (
        "Recompute the audit hash chain and check every signed checkpoint; exit 0 when intact, "
        "1 naming the first problem (altered, deleted, inserted, reordered, bad_signature, "
        "checkpoint_mismatch, truncated)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--json", action="store_true", help="Print the report as one JSON object."
        )

    def handle(self, *args, **options):
        report = chain_verify()
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), sort_keys=True))
            if not report.intact:
                raise CommandError(
                    f"audit chain BROKEN at event #{report.first_bad_seq} ({report.kind})",
                    returncode=1,
                )
            return
        if not report.intact:
            raise CommandError(
                f"audit chain BROKEN at event #{report.first_bad_seq} [{report.kind}]: "
                f"{report.problem} ({report.checked} events and {report.checkpoints_checked} "
                "checkpoints verified before it)",
                returncode=1,
            )
        anchored = (
            f"anchored by checkpoint #{report.anchored_seq}"
            if report.anchored_seq
            else "no signed checkpoint yet"
        )
        self.stdout.write(
            f"audit chain intact: {report.checked} events verified, "
            f"{report.checkpoints_checked} checkpoint signatures verified, {anchored}"
        )
        for note in report.notes:
            self.stdout.write(f"note: {note}")
