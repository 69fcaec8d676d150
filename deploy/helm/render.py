#!/usr/bin/python3
"""Renders the edge chart where Helm is not installed (Debian 12 does not package it). The
templates use only this subset of Helm's template language, which renders the same in Helm:
  {{ .Values.a.b }}  {{ .Release.Name }}  {{ .Release.Namespace }}  {{ X | quote }}
  {{- toYaml X | nindent N }}
Anything else is an error. Usage:
  render.py [--name edge] [--namespace edge] [--set a.b=v ...] CHART_DIR > manifests.yaml"""
import argparse
import json
import os
import re
import sys

import yaml

EXPR = re.compile(r"(\s*)\{\{(-?)\s*(.*?)\s*(-?)\}\}")


def lookup(ctx, path):
    cur = ctx
    for part in path.lstrip(".").split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise KeyError(f"no value for .{path.lstrip('.')}")
        cur = cur[part]
    return cur


def scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def evaluate(expr, ctx):
    parts = [p.strip() for p in expr.split("|")]
    head = parts[0]
    if head.startswith("toYaml "):
        value = lookup(ctx, head[len("toYaml "):].strip())
        if len(parts) != 2 or not parts[1].startswith("nindent "):
            raise ValueError(f"toYaml must be followed by | nindent N: {expr}")
        n = int(parts[1].split()[1])
        text = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=False, sort_keys=False)
        if isinstance(value, str):  # Helm's toYaml of a multi-line string is a literal block
            text = yaml.safe_dump(value, default_style="|").rstrip("\n")
            if text.startswith("|"):
                body = text.split("\n", 1)[1] if "\n" in text else ""
                return " " + text.split("\n", 1)[0] + "\n" + "\n".join(" " * n + l[2:] if l.strip() else "" for l in body.split("\n"))
        return "\n" + "\n".join(" " * n + l for l in text.rstrip("\n").split("\n"))
    value = lookup(ctx, head)
    out = scalar(value)
    for f in parts[1:]:
        if f == "quote":
            out = json.dumps(out)
        else:
            raise ValueError(f"unsupported template function {f!r} in {expr}")
    return out


def render_text(text, ctx):
    def sub(m):
        lead, trim_left, expr, _ = m.groups()
        value = evaluate(expr, ctx)
        return ("" if trim_left else lead) + value
    out = EXPR.sub(sub, text)
    if "{{" in out:
        raise ValueError("unrendered template expression left")
    return out


def set_value(values, assignment):
    key, _, raw = assignment.partition("=")
    cur = values
    parts = key.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = yaml.safe_load(raw)


def render_chart(chart, name="edge", namespace="edge", sets=()):
    with open(os.path.join(chart, "values.yaml")) as f:
        values = yaml.safe_load(f)
    for s in sets:
        set_value(values, s)
    ctx = {"Values": values, "Release": {"Name": name, "Namespace": namespace}}
    docs = []
    tdir = os.path.join(chart, "templates")
    for fn in sorted(os.listdir(tdir)):
        if fn.endswith(".yaml"):
            with open(os.path.join(tdir, fn)) as f:
                docs.append(f"---\n# Source: edge/templates/{fn}\n" + render_text(f.read(), ctx).rstrip("\n") + "\n")
    return "".join(docs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("chart")
    ap.add_argument("--name", default="edge")
    ap.add_argument("--namespace", default="edge")
    ap.add_argument("--set", action="append", default=[])
    a = ap.parse_args()
    sys.stdout.write(render_chart(a.chart, a.name, a.namespace, a.set))


if __name__ == "__main__":
    main()
