import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]


def test_check_deploy_passes_but_for_tls_warnings(tmp_path):
    """With DJANGO_DEBUG=0 only the warnings a TLS-terminating proxy answers remain."""
    env = {
        **os.environ,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "x" * 20 + "Kq3!vB7#pL9@zR2$mN5^wE8&tY1*uI4(oP6)aS0",
        "PLM_DATA_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    issues = set(re.findall(r"\(([a-z_.]+\.[EW]\d+)\)", output))
    assert issues <= {"security.W004", "security.W008"}, output


@pytest.mark.django_db
def test_models_and_migrations_agree():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


@pytest.mark.django_db
def test_openapi_schema_validates_without_warnings():
    """Every endpoint is typed: drf-spectacular emits no warning and the schema is valid."""
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", os.devnull)
