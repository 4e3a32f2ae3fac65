"""Output formats: json (schema-checked), SARIF 2.1.0 (validated against a schema subset),
GitHub workflow annotations and the text view."""
from __future__ import annotations

import json

import jsonschema
import pytest

from ovi_studio.diagnostics import Diagnostic, Fix, Severity
from ovi_studio.lint.formats import format_github, format_json, format_text, sarif_document

DIAGNOSTICS = [
    Diagnostic("story.yaml", 6, 16, 6, 19, "OVI103", Severity.ERROR, "malformed tag `<s>`: write `<S>`",
               "a", Fix("rewrite", "…", "a", "prompt")),
    Diagnostic("story.yaml", 9, 5, 9, 5, "OVI201", Severity.WARNING, "no audio caption, 100%: add one", "b"),
    Diagnostic("prompts.csv", 2, 1, 2, 40, "OVI305", Severity.INFO, "short\nprompt", None),
]

JSON_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["file", "line", "column", "end_line", "end_column", "code", "severity",
                     "message", "shot", "fixable"],
        "properties": {
            "file": {"type": "string"},
            "line": {"type": "integer", "minimum": 1},
            "column": {"type": "integer", "minimum": 1},
            "end_line": {"type": "integer", "minimum": 1},
            "end_column": {"type": "integer", "minimum": 1},
            "code": {"type": "string", "pattern": "^(OVI|SB)[0-9]{3}$"},
            "severity": {"enum": ["error", "warning", "info"]},
            "message": {"type": "string", "minLength": 1},
            "shot": {"type": ["string", "null"]},
            "fixable": {"type": "boolean"},
        },
    },
}

# The parts of the SARIF 2.1.0 schema (sarif-schema-2.1.0.json) that GitHub code scanning reads.
_REGION = {"type": "object", "properties": {
    "startLine": {"type": "integer", "minimum": 1}, "startColumn": {"type": "integer", "minimum": 1},
    "endLine": {"type": "integer", "minimum": 1}, "endColumn": {"type": "integer", "minimum": 1}},
    "required": ["startLine"]}
_MESSAGE = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
_LEVEL = {"enum": ["none", "note", "warning", "error"]}
SARIF_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["version", "runs"],
    "properties": {
        "$schema": {"type": "string", "format": "uri"},
        "version": {"const": "2.1.0"},
        "runs": {"type": "array", "minItems": 1, "items": {
            "type": "object",
            "required": ["tool"],
            "properties": {
                "tool": {"type": "object", "required": ["driver"], "properties": {"driver": {
                    "type": "object", "required": ["name"],
                    "properties": {
                        "name": {"type": "string"},
                        "version": {"type": "string"},
                        "informationUri": {"type": "string", "format": "uri"},
                        "rules": {"type": "array", "items": {
                            "type": "object", "required": ["id"],
                            "properties": {
                                "id": {"type": "string"},
                                "name": {"type": "string"},
                                "shortDescription": _MESSAGE, "fullDescription": _MESSAGE, "help": _MESSAGE,
                                "helpUri": {"type": "string", "format": "uri"},
                                "defaultConfiguration": {"type": "object",
                                                         "properties": {"level": _LEVEL}},
                                "properties": {"type": "object"},
                            }}},
                    }}}},
                "columnKind": {"enum": ["utf16CodeUnits", "unicodeCodePoints"]},
                "results": {"type": "array", "items": {
                    "type": "object",
                    "required": ["message"],
                    "properties": {
                        "ruleId": {"type": "string"},
                        "ruleIndex": {"type": "integer", "minimum": -1},
                        "level": _LEVEL,
                        "message": _MESSAGE,
                        "locations": {"type": "array", "items": {"type": "object", "properties": {
                            "physicalLocation": {"type": "object", "required": ["artifactLocation"],
                                                 "properties": {
                                                     "artifactLocation": {"type": "object",
                                                                          "required": ["uri"],
                                                                          "properties": {"uri": {"type": "string"}}},
                                                     "region": _REGION}}}}},
                        "partialFingerprints": {"type": "object",
                                                "additionalProperties": {"type": "string"}},
                        "properties": {"type": "object"},
                    }}},
            }}},
    },
}


def test_json_matches_its_schema():
    data = json.loads(format_json(DIAGNOSTICS))
    jsonschema.validate(data, JSON_SCHEMA)
    assert data[0]["fixable"] is True and data[1]["fixable"] is False
    assert data[0]["shot"] == "a" and data[2]["shot"] is None


def test_json_of_nothing_is_an_empty_list():
    assert json.loads(format_json([])) == []


def test_sarif_is_valid_and_carries_rule_metadata(tmp_path):
    doc = sarif_document(DIAGNOSTICS, root=tmp_path)
    jsonschema.validate(doc, SARIF_SCHEMA)
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    for result in run["results"]:
        rule = rules[result["ruleIndex"]]
        assert rule["id"] == result["ruleId"]
        assert rule["shortDescription"]["text"] and rule["help"]["text"]
        assert result["partialFingerprints"]["ovistudio/v1"]
    levels = [r["level"] for r in run["results"]]
    assert levels == ["error", "warning", "note"]
    assert run["results"][0]["locations"][0]["physicalLocation"]["region"] == {
        "startLine": 6, "startColumn": 16, "endLine": 6, "endColumn": 19}


def test_sarif_fingerprints_survive_moving_the_shot():
    moved = Diagnostic("story.yaml", 60, 3, 60, 6, "OVI103", Severity.ERROR,
                       DIAGNOSTICS[0].message, "a")
    first = sarif_document([DIAGNOSTICS[0]])["runs"][0]["results"][0]["partialFingerprints"]
    second = sarif_document([moved])["runs"][0]["results"][0]["partialFingerprints"]
    assert first == second


def test_github_annotations():
    lines = format_github(DIAGNOSTICS).splitlines()
    assert lines[0] == ("::error file=story.yaml,line=6,col=16,endLine=6,endColumn=19,"
                        "title=OVI103 malformed tag::malformed tag `<s>`: write `<S>`")
    assert lines[1].startswith("::warning file=story.yaml,line=9,")
    assert lines[1].endswith("::no audio caption, 100%25: add one")
    assert lines[2].startswith("::notice ") and lines[2].endswith("::short%0Aprompt")


def test_text_is_ruff_like_with_a_summary():
    text = format_text(DIAGNOSTICS)
    first = text.splitlines()[0]
    assert first.startswith("story.yaml:6:16: OVI103 [*] error: malformed tag")
    assert "Found 1 error, 1 warning, 1 info." in text
    assert "1 fixable with `ovi-studio check --fix`" in text
    assert format_text([]).strip() == "All checks passed!"


@pytest.mark.parametrize("diag, caret", [
    (DIAGNOSTICS[0], "^^^"),
    (DIAGNOSTICS[1], "^"),
])
def test_text_source_view_puts_a_caret_under_the_columns(diag, caret):
    source = {6: "      He says, <s>Late again.<E>", 9: "  - id: b"}
    text = format_text([diag], show_source=True, read_line=lambda file, line: source[line])
    lines = text.splitlines()
    assert lines[1].endswith(source[diag.line])
    gutter = lines[1].index("|") + 2
    assert lines[2][gutter + diag.column - 1:].rstrip() == caret
