from django.core.management.base import BaseCommand, CommandError

from apps.accounts.models import User
from apps.accounts.services import token_create


class Command(BaseCommand):
    help = "Create a personal access token for USERNAME; the token is the last word printed."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="cli")
        parser.add_argument("--days", type=int, default=None)

    def handle(self, *args, username, name, days, **options):
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        new = token_create(actor=user, user=user, name=name, days=days)
        self.stdout.write(
            f"Token {new.token.prefix} for {username}, expires {new.token.expires_at:%Y-%m-%d}."
        )
        self.stdout.write(f"token: {new.key}")
