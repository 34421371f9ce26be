#!/usr/bin/env python3
"""Checks berth's manifest JSON Schema (draft-07) with the `jsonschema` package.

usage: check.py SCHEMA.json accept FILE.yaml...   every document must validate
       check.py SCHEMA.json reject FILE.yaml...   every document must fail validation

Prints one line per document; exits 1 when a document does not behave as asked.
"""
import json
import sys

import jsonschema
import yaml


def main() -> int:
    schema_path, mode, *files = sys.argv[1:]
    with open(schema_path) as f:
        schema = json.load(f)
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    bad = 0
    for path in files:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        for i, doc in enumerate(docs):
            errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
            where = f"{path}[{i}] {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            if mode == "accept" and errors:
                bad += 1
                for e in errors:
                    print(f"FAIL {where}: {'.'.join(map(str, e.path))}: {e.message}")
            elif mode == "reject" and not errors:
                bad += 1
                print(f"FAIL {where}: accepted, expected an error")
            else:
                first = f": {'.'.join(map(str, errors[0].path))}: {errors[0].message}" if errors else ""
                print(f"ok   {where} ({mode}){first}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
