#!/usr/bin/env python3
"""Checks data/openapi.json with a real validator, then checks recorded live answers against it.

Usage: openapi_check.py OPENAPI.json [SAMPLES.json]

SAMPLES is a JSON array of {"method", "path", "status", "content_type", "body"} recorded from a
live node by tests/openapi.rs. Each answer must be described by the document (path, method,
status and content type) and, when it is JSON, its body must validate against the schema the
document gives. Every operation in the document must have been exercised at least once.
Prints one summary line; exits non-zero on the first class of failure, listing every case.
"""
import json
import re
import sys

from openapi_spec_validator import validate
from openapi_schema_validator import OAS31Validator


def template_matches(template, path):
    pattern = "^" + re.sub(r"\{[^/]+\}", "[^/]+", template) + "$"
    return re.match(pattern, path) is not None


def main():
    doc = json.load(open(sys.argv[1]))
    validate(doc)
    if len(sys.argv) < 3:
        print("openapi: document valid")
        return 0
    samples = json.load(open(sys.argv[2]))
    failures = []
    exercised = set()
    responses = set()
    for s in samples:
        path = s["path"].split("?", 1)[0]
        templates = [t for t in doc["paths"] if template_matches(t, path)]
        # The most specific template (fewest parameters) wins.
        templates.sort(key=lambda t: t.count("{"))
        where = f'{s["method"]} {s["path"]} -> {s["status"]}'
        if not templates:
            failures.append(f"{where}: no path in the document")
            continue
        template = templates[0]
        op = doc["paths"][template].get(s["method"].lower())
        if op is None:
            failures.append(f"{where}: method not described for {template}")
            continue
        exercised.add((s["method"].upper(), template))
        described = op["responses"].get(str(s["status"]))
        if described is None:
            failures.append(f"{where}: status not described")
            continue
        responses.add((s["method"].upper(), template, s["status"]))
        content = described.get("content")
        if not content:
            if s["body"] not in ("", None):
                failures.append(f"{where}: a body where the document describes none")
            continue
        ctype = (s["content_type"] or "").split(";")[0].strip()
        if ctype not in content:
            failures.append(f"{where}: content type {ctype!r} not described")
            continue
        if ctype != "application/json":
            continue
        pointer = "/".join(
            p.replace("~", "~0").replace("/", "~1")
            for p in ["#", "paths", template, s["method"].lower(), "responses", str(s["status"]),
                      "content", ctype, "schema"]
        )
        root = dict(doc)
        root["$ref"] = pointer
        try:
            body = json.loads(s["body"])
        except ValueError:
            failures.append(f"{where}: the body is not JSON")
            continue
        errors = sorted(OAS31Validator(root).iter_errors(body), key=lambda e: e.path)
        for e in errors:
            failures.append(f"{where}: {'/'.join(map(str, e.path))}: {e.message}")
    every = {(m.upper(), t) for t, item in doc["paths"].items() for m in item
             if m in ("get", "put", "post", "delete", "options")}
    for m, t in sorted(every - exercised):
        failures.append(f"{m} {t}: documented but never exercised")
    print(f"openapi: {len(samples)} answers, {len(exercised)} of {len(every)} operations, "
          f"{len(responses)} distinct responses checked; {len(failures)} failures")
    for f in failures:
        print("  " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
