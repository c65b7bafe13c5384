from django.core.management.base import BaseCommand

from apps.audit import signing
from apps.audit.checkpoints import checkpoint_create
from apps.core.exceptions import ApplicationError


class Command(BaseCommand):
    help = (
        "Sign a checkpoint of the audit chain now (when events were added since the latest), "
        "print the public key, or generate a new signing key."
    )

    def add_arguments(self, parser):
        group = parser.add_mutually_exclusive_group()
        group.add_argument(
            "--public-key", action="store_true", help="Print the current public key (PEM)."
        )
        group.add_argument(
            "--generate-key",
            action="store_true",
            help="Print a new private key (PEM) for AUDIT_SIGNING_KEY or a key file; nothing "
            "is stored. Keep the old public key in AUDIT_PUBLIC_KEYS_EXTRA.",
        )

    def handle(self, *args, **options):
        if options["public_key"]:
            self.stdout.write(f"# key id {signing.key_id()}")
            self.stdout.write(signing.public_key_pem().rstrip())
            return
        if options["generate_key"]:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

            self.stdout.write(signing.private_key_pem(Ed25519PrivateKey.generate()).rstrip())
            return
        try:
            checkpoint = checkpoint_create(force=True)
        except ApplicationError as exc:
            self.stderr.write(exc.message)
            raise SystemExit(1) from exc
        if checkpoint is None:
            self.stdout.write("no checkpoint needed: no event since the latest checkpoint")
        else:
            self.stdout.write(
                f"checkpoint #{checkpoint.seq} signed by key {checkpoint.key_id} "
                f"({checkpoint.events} events since the previous one)"
            )
