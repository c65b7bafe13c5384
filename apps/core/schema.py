"""A choice field documented as its own named enum component (``$ref``).

Several resources have a ``state`` field with different choices; drf-spectacular names the enums
of same-named fields by hashing them and warns when it cannot name them well. A
``NamedChoiceField`` is a reference to a component named after its resource (for example
``PlaygroundRunStateEnum``), so it takes no part in that naming.
"""

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework import serializers


class NamedChoiceField(serializers.ChoiceField):
    def __init__(self, *, enum_name: str, **kwargs):
        self.enum_name = enum_name
        super().__init__(**kwargs)


class NamedChoiceFieldExtension(OpenApiSerializerFieldExtension):
    target_class = NamedChoiceField

    def map_serializer_field(self, auto_schema, direction):
        field = self.target
        values = list(field.choices)
        component = ResolvedComponent(
            name=field.enum_name,
            type=ResolvedComponent.SCHEMA,
            object=field.enum_name,
            schema={
                "type": "string",
                "enum": values,
                "description": "\n".join(f"* `{value}`" for value in values),
            },
        )
        auto_schema.registry.register_on_missing(component)
        return component.ref
