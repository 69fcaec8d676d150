#!/usr/bin/python3
"""The Kubernetes deployment, offline: the chart (deploy/helm/edge) rendered by deploy/helm/render.py
is the committed plain manifest deploy/k8s/edge.yaml (they cannot drift apart); it passes
check_manifests.py (Kubernetes API field names and required fields through python3-kubernetes'
models, and the workload's own rules); the edged.yaml it carries passes `edged --check`; its BIRD
config passes `bird -p` and announces the VIPs of that edged.yaml; yamllint finds no error. Each
mutation in the table below must be caught, so the checks can fail."""
import copy
import os
import re
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD = os.environ.get("EDGE_BUILD", os.path.join(SRC, "build"))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(SRC, "deploy", "helm"))
import check_manifests  # noqa: E402
import render  # noqa: E402

failures = []
EXTERNAL = dict(external_cm=["edge-rules"], external_secret=["edge-tls", "edge-ticket-keys"])


def that(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


rendered = render.render_chart(os.path.join(SRC, "deploy", "helm", "edge"))
committed = open(os.path.join(SRC, "deploy", "k8s", "edge.yaml")).read()
that(rendered == committed, "deploy/k8s/edge.yaml is the chart rendered with its defaults "
     "(regenerate: deploy/helm/render.py deploy/helm/edge > deploy/k8s/edge.yaml)")
docs = [d for d in yaml.safe_load_all(committed) if d]
that(sorted(d["kind"] for d in docs) == ["ConfigMap", "DaemonSet", "NetworkAttachmentDefinition", "PodDisruptionBudget"],
     f"the manifests hold {[d['kind'] for d in docs]}")
findings = check_manifests.check(docs, **EXTERNAL)
that(findings == [], "check_manifests finds nothing: " + "; ".join(findings))

r = subprocess.run(["yamllint", "-d", "{extends: relaxed, rules: {line-length: disable}}", "-f", "parsable",
                    os.path.join(SRC, "deploy", "k8s", "edge.yaml"), os.path.join(SRC, "deploy", "helm", "edge", "values.yaml")],
                   capture_output=True, text=True)
that("[error]" not in r.stdout, "yamllint: no errors " + r.stdout.strip()[:300])

cm = next(d for d in docs if d["kind"] == "ConfigMap")
with tempfile.TemporaryDirectory() as tmp:
    p = os.path.join(tmp, "edged.yaml")
    with open(p, "w") as f:
        f.write(cm["data"]["edged.yaml"])
    r = subprocess.run([os.path.join(BUILD, "edge", "edged"), "--check", p], capture_output=True, text=True)
    that(r.returncode == 0, f"the ConfigMap's edged.yaml passes edged --check: {(r.stdout + r.stderr).strip()}")
    b = os.path.join(tmp, "bird.conf")
    with open(b, "w") as f:
        f.write(cm["data"]["bird.conf"])
    r = subprocess.run(["bird", "-p", "-c", b], capture_output=True, text=True)
    that(r.returncode == 0, f"the ConfigMap's bird.conf passes bird -p {(r.stdout + r.stderr).strip()}")
vips = {str(s["vip"]) for s in yaml.safe_load(cm["data"]["edged.yaml"])["services"]}
routes = set(re.findall(r"route (\S+)/(?:32|128) blackhole", cm["data"]["bird.conf"]))
that(vips == routes, f"BIRD announces exactly edged's VIPs ({routes} vs {vips})")


def ds(d):
    return next(x for x in d if x["kind"] == "DaemonSet")


def edged(d):
    return next(c for c in ds(d)["spec"]["template"]["spec"]["containers"] if c["name"] == "edged")


mutations = [
    ("a misspelled field (volumeMount)", lambda d: edged(d).__setitem__("volumeMount", []), "not a field of V1Container"),
    ("a field at the wrong level (hostPort in the pod spec)", lambda d: ds(d)["spec"]["template"]["spec"].__setitem__("hostPort", 1),
     "not a field of V1PodSpec"),
    ("a required field missing (a container's name)", lambda d: ds(d)["spec"]["template"]["spec"]["containers"][1].pop("name"), "`name`, must not be `None`"),
    ("privileged", lambda d: edged(d)["securityContext"].__setitem__("privileged", True), "is privileged"),
    ("an extra capability", lambda d: edged(d)["securityContext"]["capabilities"]["add"].append("SYS_ADMIN"), "capabilities"),
    ("a mount of no volume", lambda d: edged(d)["volumeMounts"].append({"name": "nope", "mountPath": "/x"}), "not a volume"),
    ("a ConfigMap that is nowhere", lambda d: ds(d)["spec"]["template"]["spec"]["volumes"][0]["configMap"].__setitem__("name", "gone"),
     "which is nowhere"),
    ("hugepages limit != request", lambda d: edged(d)["resources"]["limits"].__setitem__("hugepages-1Gi", "4Gi"), "hugepages-1Gi"),
    ("no SR-IOV VF requested", lambda d: edged(d)["resources"]["requests"].pop("intel.com/sriov_netdevice"), "SR-IOV"),
    ("another image tag on a sidecar", lambda d: ds(d)["spec"]["template"]["spec"]["containers"][1].__setitem__(
        "image", "registry.example.com/edge/edged:0.0.9"), "different tags"),
    ("no preStop drain", lambda d: edged(d).pop("lifecycle"), "preStop"),
    ("a PDB that selects nothing", lambda d: next(x for x in d if x["kind"] == "PodDisruptionBudget")["spec"]["selector"][
        "matchLabels"].__setitem__("app.kubernetes.io/name", "other"), "selects no pod"),
    ("a grace period shorter than the drain", lambda d: ds(d)["spec"]["template"]["spec"].__setitem__(
        "terminationGracePeriodSeconds", 5), "does not cover the drain"),
]
for what, mutate, expect in mutations:
    d = copy.deepcopy(docs)
    mutate(d)
    f = check_manifests.check(d, **EXTERNAL)
    that(any(expect in x for x in f), f"caught: {what} ({'; '.join(f)[:160]})")
print(f"test_manifests: {'FAILED' if failures else 'passed'} ({len(failures)} failures)")
sys.exit(1 if failures else 0)
