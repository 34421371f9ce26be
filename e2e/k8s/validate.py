#!/usr/bin/env python3
"""Offline validation of berth's Kubernetes artefacts, with real schema validators.

    validate.py crds DIR                 CRDs: kubernetes-validate (apiextensions.k8s.io/v1
                                         schema of Kubernetes 1.33, strict) + structural-schema
                                         rules the API server enforces
    validate.py examples CRD_DIR DIR...  berth manifests (*.yaml) against the CRDs' own
                                         openAPIV3Schema (jsonschema; unknown fields are errors)
    validate.py chart CHART_DIR [NS]     Helm's own lint (helm-python-sdk, strict) and offline
                                         render with several value sets; every rendered object
                                         validated with kubernetes-validate (strict)

Needs: pip install kubernetes-validate helm-python-sdk (.ci/run installs them).
Exit 0 when everything is valid; 1 with one line per problem otherwise.
"""

import copy
import re
import glob
import json
import os
import sys

import yaml

K8S_VERSION = "1.33.0"


def fail(problems):
    for p in problems:
        print(f"INVALID: {p}", file=sys.stderr)
    sys.exit(1 if problems else 0)


def load_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def kube_validate(doc, where, problems):
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = "/".join(str(p) for p in e.path)
        problems.append(f"{where}: {path}: {e.message}")
    except Exception as e:  # SchemaNotFoundError etc.
        problems.append(f"{where}: {type(e).__name__}: {e}")


def structural(schema, path, problems, root=False):
    """The API server's structural-schema rules, as far as berth's CRDs use the features."""
    for bad in ("$ref", "definitions", "$defs", "$schema", "oneOf", "anyOf", "allOf", "not"):
        if bad in schema:
            problems.append(f"{path}: {bad} is not allowed in a structural schema")
    preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
    int_or_string = schema.get("x-kubernetes-int-or-string") is True
    if "type" not in schema and not (preserve or int_or_string):
        problems.append(f"{path}: every node needs a type")
    t = schema.get("type")
    if isinstance(t, list):
        problems.append(f"{path}: type must be a single string, got {t}")
    if "properties" in schema and "additionalProperties" in schema:
        problems.append(f"{path}: properties and additionalProperties are exclusive")
    if schema.get("additionalProperties") is False:
        problems.append(f"{path}: additionalProperties: false is not allowed")
    if root and t != "object":
        problems.append(f"{path}: the root must be an object")
    for name, sub in schema.get("properties", {}).items():
        structural(sub, f"{path}.{name}", problems)
    if isinstance(schema.get("additionalProperties"), dict):
        structural(schema["additionalProperties"], f"{path}.*", problems)
    if "items" in schema:
        structural(schema["items"], f"{path}[]", problems)
        if schema.get("x-kubernetes-list-type") == "map":
            req = set(schema["items"].get("required", []))
            for k in schema.get("x-kubernetes-list-map-keys", []):
                if k not in req:
                    problems.append(f"{path}: list-map key {k} must be required in items")
    elif t == "array":
        problems.append(f"{path}: an array needs items")
    for k in schema.get("required", []):
        if k not in schema.get("properties", {}):
            problems.append(f"{path}: required field {k} is not a property")


def json_path_exists(schema, json_path):
    """True when a printer column's simple JSONPath (.a.b, .a[...].b) names schema fields."""
    node = schema
    for name, index in re.findall(r"\.([A-Za-z0-9_]+)|(\[[^\]]*\])", json_path):
        if index:
            if node.get("type") != "array":
                return False
            node = node.get("items", {})
            continue
        if name == "metadata" and node is schema:
            return True
        props = node.get("properties", {})
        if name not in props:
            return False
        node = props[name]
    return True


def check_crds(directory):
    problems = []
    files = sorted(glob.glob(os.path.join(directory, "*.yaml")))
    if not files:
        problems.append(f"{directory}: no CRD files")
    for f in files:
        for doc in load_docs(f):
            kube_validate(doc, f, problems)
            spec = doc.get("spec", {})
            for v in spec.get("versions", []):
                schema = v.get("schema", {}).get("openAPIV3Schema", {})
                structural(schema, f"{f}:{v.get('name')}", problems, root=True)
                if v.get("subresources", {}).get("status") is None:
                    problems.append(f"{f}: version {v.get('name')} has no status subresource")
                for col in v.get("additionalPrinterColumns", []):
                    if not json_path_exists(schema, col["jsonPath"]):
                        problems.append(f"{f}: printer column {col['name']}: {col['jsonPath']} names no field")
            if not spec.get("names", {}).get("shortNames"):
                problems.append(f"{f}: no short names")
    print(f"{len(files)} CRD file(s) checked")
    return problems


def strict_schema(schema):
    """The CRD schema with unknown fields forbidden (as kubectl's strict field validation)."""
    s = copy.deepcopy(schema)

    def walk(node):
        if node.get("nullable"):
            t = node.get("type")
            if isinstance(t, str):
                node["type"] = [t, "null"]
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for sub in node.get("properties", {}).values():
            walk(sub)
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"])
        if "items" in node:
            walk(node["items"])

    walk(s)
    # apiVersion, kind and metadata are the API server's, not in the CRD schema's properties.
    s["properties"]["apiVersion"] = {"type": "string"}
    s["properties"]["kind"] = {"type": "string"}
    s["properties"]["metadata"] = {"type": "object"}
    return s


def check_examples(crd_dir, dirs):
    import jsonschema

    problems = []
    schemas = {}
    for f in sorted(glob.glob(os.path.join(crd_dir, "*.yaml"))):
        for doc in load_docs(f):
            kind = doc["spec"]["names"]["kind"]
            for v in doc["spec"]["versions"]:
                api = f"{doc['spec']['group']}/{v['name']}"
                schemas[(api, kind)] = strict_schema(v["schema"]["openAPIV3Schema"])
    count = 0
    for d in dirs:
        for f in sorted(glob.glob(os.path.join(d, "**", "*.y*ml"), recursive=True)):
            for doc in load_docs(f):
                count += 1
                key = (doc.get("apiVersion"), doc.get("kind"))
                if key not in schemas:
                    problems.append(f"{f}: no CRD for {key}")
                    continue
                v = jsonschema.Draft7Validator(schemas[key])
                for e in sorted(v.iter_errors(doc), key=lambda e: list(e.path)):
                    path = ".".join(str(p) for p in e.path)
                    problems.append(f"{f}: {doc['metadata']['name']}: {path}: {e.message}")
    print(f"{count} example object(s) checked against the CRD schemas")
    return problems


def check_chart(chart_dir, namespace="berth-system"):
    import helm_python as helm

    problems = []
    value_sets = json.loads(os.environ.get("BERTH_CHART_VALUE_SETS", "null")) or [{}]
    for values in value_sets:
        report = helm.lint(chart_dir, values, strict=True, namespace=namespace, kube_version="v1.33.0")
        for m in report.get("messages", []):
            if m.get("severity", 0) >= 2:
                problems.append(f"helm lint {json.dumps(values)}: {m.get('path')}: {m.get('error')}")
        for e in report.get("errors", []) or []:
            problems.append(f"helm lint {json.dumps(values)}: {e}")
        chart = helm.Chart.load(chart_dir)
        try:
            chart.validate_schema(values)
        except Exception as e:
            problems.append(f"values.schema.json rejects {json.dumps(values)}: {e}")
            continue
        rendered = chart.render(values, name="berth", namespace=namespace, is_install=True)
        objects = 0
        for path, text in sorted(rendered.items()):
            if not path.endswith((".yaml", ".yml")):
                continue
            for doc in yaml.safe_load_all(text):
                if not doc:
                    continue
                objects += 1
                where = f"{path} ({json.dumps(values)}) {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
                kube_validate(doc, where, problems)
        crds = chart.crds() if callable(chart.crds) else chart.crds
        if not crds:
            problems.append(f"{chart_dir}: the chart ships no CRDs")
        for crd in crds:
            for doc in yaml.safe_load_all(crd.get("data", "")):
                if doc:
                    kube_validate(doc, f"chart crd {crd.get('name')}", problems)
        print(f"chart {chart_dir} with values {json.dumps(values)}: {objects} object(s) rendered")
    chart = helm.Chart.load(chart_dir)
    for bad in ({"logFormat": "xml"}, {"daemonSet": {"dockerSocket": "relative"}}, {"unknownKey": 1},
                {"watchNamespaces": ["Not_A_Namespace"]}):
        try:
            chart.validate_schema(bad)
            problems.append(f"values.schema.json accepts invalid values {json.dumps(bad)}")
        except Exception:
            pass
    return problems


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cmd = argv[1]
    if cmd == "crds":
        fail(check_crds(argv[2]))
    elif cmd == "examples":
        fail(check_examples(argv[2], argv[3:]))
    elif cmd == "chart":
        fail(check_chart(argv[2], *argv[3:4]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)
