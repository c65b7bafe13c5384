from django.conf import settings
from django.core.management.base import BaseCommand

from apps.demo.services import DEMO_USERS, seed_demo


class Command(BaseCommand):
    help = "Create the demo organisation (idempotent: a second run changes nothing)."

    def handle(self, *args, **options):
        result = seed_demo()
        created = result["created"]
        self.stdout.write(
            f"demo organisation ready ({len(created)} things created"
            + (f": {', '.join(created)}" if created else ", nothing to do")
            + ")"
        )
        self.stdout.write("demo logins (password from DEMO_PASSWORD):")
        for username, role, _ in DEMO_USERS:
            self.stdout.write(f"  {username:<10} {role:<16} {settings.DEMO_PASSWORD}")
