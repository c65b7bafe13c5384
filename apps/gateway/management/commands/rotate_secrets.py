from django.core.management.base import BaseCommand

from apps.gateway.services import provider_secrets_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every provider secret under the newest key of PLM_SECRET_KEYS; afterwards the "
        "older keys can be removed."
    )

    def handle(self, *args, **options):
        rotated = provider_secrets_rotate(actor=None)
        self.stdout.write(f"rotated {rotated} provider secret(s) to the newest key")
