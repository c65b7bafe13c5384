"""The dossier's files: deterministic JSON (sorted keys, indented), Markdown and plain text.

The same content always gives the same bytes, so each file's sha256 in the manifest is stable:
only ``manifest.json`` (it says when and by whom the dossier was generated) and its signature
differ between two exports of an unchanged release.
"""

from __future__ import annotations

import json
from typing import Any

from apps.core.hashing import to_jsonable

from .collect import DossierContent

README = """\
Compliance dossier of {product} release {version}
{underline}

Release fingerprint: {fingerprint}
Format: plm-dossier/v1 (exported by the PLM Portal)

What each file is
-----------------
manifest.json              The index: the release, when and by whom the dossier was generated,
                           the sha256 of every other file, and the audit checkpoint it is
                           anchored to (the newest signed checkpoint of the portal's
                           hash-chained audit trail when the dossier was made).
manifest.sig               Ed25519 signature (base64) over the exact bytes of manifest.json.
public-key.pem             The portal's signing public key, for convenience only: verify against
                           a copy of the key you obtained from the portal separately.
README.txt                 This file.
inventory.json             The inventory entry: product, owner team, intended purpose, risk
                           class, lifecycle stage and its history; the release and its bill of
                           materials (prompt, model, fallback models, datasets, settings).
model-cards/*.json, *.md   The model card of each model version the release calls (the primary
                           one and its fallback chain): provider, parameters, base model,
                           training and fine-tuning lineage, model-card fields.
datasheets/*.json, *.md    The datasheet of each dataset version the release or its models use:
                           sha256, source, licence, PII class, retention date, schema, rows.
prompts/*.json             The prompt template version of the release (and of the previous
                           released release, when it differs): messages, variables schema,
                           parameters, content hash.
prompts/diff-*.txt         Unified diff of the prompt from the previous released release
                           (diff-from-<version>.txt), or a note that this is the first release
                           (diff-first-release.txt).
evaluations/runs.json      Every evaluation run of this release: suite version, state, pass rate,
                           aggregates, cost, what it ran with.
evaluations/<run>-results.json
                           The per-case results of one run: outcome, checks, output (or a note
                           that the output was purged under the retention policy).
changes/<id>.json          Each change request that proposed this release, with every approval
                           and signature (reviewer, role, decision, comment, the content
                           fingerprint signed, when, the evidence relied on) and its history.
effectivity.json           The product's effectivity timeline: which release was live when.
apis.json                  The published APIs serving this release, their plans and limits,
                           subscriptions and keys (key prefixes only: never a secret).
access-events.json         The audit events of those subscriptions and keys (requested,
                           approved, rejected, suspended, cancelled; key created, rotated,
                           revoked): who, when, what (prefixes only).
incidents.json             The incidents filed against this release.

How to verify
-------------
1. Obtain the portal's public key (PEM) from a trusted source, not from this ZIP: the
   portal's /audit/public-key.pem page, GET /api/v1/audit/public-key/, or its operators
   (manage.py audit_checkpoint --public-key).
2. Run, in a checkout of the PLM Portal (no database or configuration needed):

       python -m apps.compliance.verify_dossier {zip_name} --public-key trusted-key.pem

   It checks the manifest signature, the sha256 of every file, that no file is missing or
   added, and the audit checkpoint's signature; it prints "dossier intact" and exits 0, or
   names each problem (for example "altered: evaluations/runs.json") and exits 1.
3. Without the verifier: check manifest.sig with any Ed25519 tool over manifest.json
   (for example: base64 -d manifest.sig > sig.bin; openssl pkeyutl -verify -pubin
   -inkey trusted-key.pem -rawin -in manifest.json -sigfile sig.bin), then compare each
   file's sha256 (sha256sum) with manifest.json's "files".
4. To tie the dossier to the audit trail, compare the manifest's checkpoint (seq, head_hash)
   with the portal's audit chain: the trail's event #seq must have that hash.
"""


def json_bytes(value: Any) -> bytes:
    """Deterministic JSON: sorted keys, two-space indent, UTF-8, a final newline."""
    text = json.dumps(to_jsonable(value), sort_keys=True, indent=2, ensure_ascii=False)
    return (text + "\n").encode("utf-8")


def _md_value(value: Any) -> str:
    if value is None or value == "" or value == {} or value == []:
        return "—"
    if isinstance(value, dict | list):
        return "`" + json.dumps(to_jsonable(value), sort_keys=True, ensure_ascii=False) + "`"
    return str(value).replace("\n", " ")


def model_card_md(card: dict) -> str:
    lines = [
        f"# Model card: {card['label']}",
        "",
        f"Role in the release: {card['role']}. Content hash: `{card['content_hash']}`.",
        "",
        "| Field | Value |",
        "| --- | --- |",
    ]
    lines += [
        f"| {key.replace('_', ' ')} | {_md_value(card[key])} |"
        for key in ("provider", "provider_model", "base_model", "parameters", "changelog")
    ]
    created = _md_value(to_jsonable(card["created_at"]))
    lines.append(f"| base version | {_md_value((card['base_version'] or {}).get('label'))} |")
    lines.append(f"| created | {created} by {card['created_by'] or 'system'} |")
    lines += ["", "## Model-card fields", ""]
    fields = card["model_card"] or {}
    if fields:
        lines += ["| Field | Value |", "| --- | --- |"]
        lines += [f"| {k} | {_md_value(fields[k])} |" for k in sorted(fields)]
    else:
        lines.append("No model-card fields recorded.")
    lines += ["", "## Lineage", ""]
    if card["lineage"]:
        lines += ["| Purpose | Dataset version | sha256 |", "| --- | --- | --- |"]
        lines += [
            f"| {link['purpose']} | {link['dataset_version']['label']} | "
            f"`{link['sha256'] or '—'}` |"
            for link in card["lineage"]
        ]
    else:
        lines.append("No training or fine-tuning datasets recorded.")
    return "\n".join(lines) + "\n"


def datasheet_md(sheet: dict) -> str:
    lines = [
        f"# Datasheet: {sheet['label']}",
        "",
        f"Used as: {', '.join(sheet['used_as'])}. Content hash: `{sheet['content_hash']}`.",
        "",
        "| Field | Value |",
        "| --- | --- |",
    ]
    keys = (
        "sha256",
        "source",
        "licence",
        "pii_class",
        "retention_until",
        "uri",
        "file_name",
        "format",
        "row_count",
        "size_bytes",
        "schema",
        "changelog",
    )
    lines += [f"| {key.replace('_', ' ')} | {_md_value(to_jsonable(sheet[key]))} |" for key in keys]
    lines.append(f"| parent | {_md_value((sheet['parent'] or {}).get('label'))} |")
    return "\n".join(lines) + "\n"


def _strip(row: dict, *keys: str) -> dict:
    return {k: v for k, v in row.items() if k not in keys}


def readme_text(content: DossierContent, zip_name: str) -> str:
    title = f"Compliance dossier of {content.product.slug} release {content.release.version}"
    return README.format(
        product=content.product.slug,
        version=content.release.version,
        underline="=" * len(title),
        fingerprint=content.release.fingerprint,
        zip_name=zip_name,
    )


def dossier_files(content: DossierContent, *, zip_name: str) -> dict[str, bytes]:
    """Every file of the dossier but the manifest, its signature and the public key."""
    files: dict[str, bytes] = {
        "README.txt": readme_text(content, zip_name).encode("utf-8"),
        "inventory.json": json_bytes(content.inventory),
    }
    for card in content.model_cards:
        files[f"model-cards/{card['file']}.json"] = json_bytes(_strip(card, "file"))
        files[f"model-cards/{card['file']}.md"] = model_card_md(card).encode("utf-8")
    for sheet in content.datasheets:
        files[f"datasheets/{sheet['file']}.json"] = json_bytes(_strip(sheet, "file"))
        files[f"datasheets/{sheet['file']}.md"] = datasheet_md(sheet).encode("utf-8")
    for prompt in content.prompts:
        files[f"prompts/{prompt['file']}.json"] = json_bytes(_strip(prompt, "file"))
    files[f"prompts/{content.prompt_diff['file']}"] = content.prompt_diff["text"].encode("utf-8")
    files["evaluations/runs.json"] = json_bytes(content.runs)
    for run_id, results in content.results.items():
        files[f"evaluations/{run_id}-results.json"] = json_bytes(
            {"run": run_id, "results": results}
        )
    for cr in content.changes:
        files[f"changes/{cr['id']}.json"] = json_bytes(cr)
    files["effectivity.json"] = json_bytes(content.effectivity)
    files["apis.json"] = json_bytes(content.apis)
    files["access-events.json"] = json_bytes(content.access_events)
    files["incidents.json"] = json_bytes(content.incidents)
    return files
