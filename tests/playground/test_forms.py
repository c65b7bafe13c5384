"""The variables form generated from a prompt's JSON Schema, one field type per schema type."""

from django import forms

from apps.playground.forms import VariablesForm

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40, "title": "Your name"},
        "body": {"type": "string", "description": "The whole message."},
        "count": {"type": "integer", "minimum": 1, "maximum": 5},
        "ratio": {"type": "number"},
        "formal": {"type": "boolean", "description": "Use a formal tone."},
        "tone": {"type": "string", "enum": ["warm", "dry"]},
        "level": {"enum": [1, 2, 3]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "maybe": {"type": ["string", "null"], "maxLength": 10},
    },
    "required": ["name", "body", "count", "tone"],
}


def test_each_schema_type_has_its_field():
    form = VariablesForm(schema=SCHEMA)
    f = form.fields
    assert list(f) == list(SCHEMA["properties"])  # the schema's order
    assert isinstance(f["name"], forms.CharField) and isinstance(f["name"].widget, forms.TextInput)
    assert f["name"].label == "Your name" and f["name"].max_length == 40
    assert isinstance(f["body"].widget, forms.Textarea)
    assert f["body"].help_text == "The whole message."
    assert isinstance(f["count"], forms.IntegerField)
    assert (f["count"].min_value, f["count"].max_value) == (1, 5)
    assert isinstance(f["ratio"], forms.FloatField)
    assert f["ratio"].widget.attrs["step"] == "any"
    assert isinstance(f["formal"], forms.BooleanField)
    assert isinstance(f["formal"].widget, forms.CheckboxInput)
    assert isinstance(f["tone"], forms.TypedChoiceField)
    assert [c[0] for c in f["tone"].choices] == ["warm", "dry"]
    assert [c[0] for c in f["level"].choices] == ["", "1", "2", "3"]  # optional: a blank first
    assert isinstance(f["tags"], forms.JSONField)
    assert isinstance(f["maybe"].widget, forms.TextInput)
    assert {n for n, field in f.items() if field.required} == {"name", "body", "count", "tone"}


def test_the_html_marks_required_fields_and_uses_the_right_inputs():
    html = VariablesForm(schema=SCHEMA).as_div()
    assert 'type="text" name="var-name"' in html
    assert '<textarea name="var-body"' in html
    assert 'type="number" name="var-count"' in html and 'min="1"' in html
    assert 'type="checkbox" name="var-formal"' in html
    assert '<select name="var-tone"' in html
    assert 'name="var-name" maxlength="40" required' in html


def test_cleaned_values_have_the_schema_types_and_empty_optionals_are_left_out():
    form = VariablesForm(
        {
            "var-name": "Ada",
            "var-body": "Hello",
            "var-count": "3",
            "var-ratio": "",
            "var-tone": "dry",
            "var-level": "2",
            "var-tags": '["a", "b"]',
            "var-maybe": "",
        },
        schema=SCHEMA,
    )
    assert form.is_valid(), form.errors
    assert form.variables() == {
        "name": "Ada",
        "body": "Hello",
        "count": 3,
        "formal": False,
        "tone": "dry",
        "level": 2,
        "tags": ["a", "b"],
    }


def test_form_errors_are_clear():
    form = VariablesForm({"var-count": "9", "var-tone": "loud"}, schema=SCHEMA)
    assert not form.is_valid()
    assert form.errors["name"] == ["This field is required."]
    assert "less than or equal to 5" in form.errors["count"][0]
    assert "Select a valid choice" in form.errors["tone"][0]


def test_a_service_error_lands_on_its_field():
    form = VariablesForm({"var-name": "x", "var-body": "y", "var-count": "1"}, schema=SCHEMA)
    form.is_valid()
    assert form.show_errors({"variables.body": ["'y' is too short"]})
    assert form.errors["body"] == ["'y' is too short"]


def test_for_a_batch_every_field_is_optional():
    form = VariablesForm({}, schema=SCHEMA, for_batch=True)
    assert not any(field.required for field in form.fields.values())
    assert isinstance(form.fields["formal"], forms.NullBooleanField)
    assert form.is_valid(), form.errors
    assert form.variables() == {}


def test_a_schema_without_properties_has_no_fields():
    assert VariablesForm(schema={}).fields == {}
    assert VariablesForm(schema={"type": "object", "properties": "nonsense"}).fields == {}
