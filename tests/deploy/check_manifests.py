#!/usr/bin/python3
"""Checks Kubernetes manifests without a cluster (helm and kind are not packaged here):
  - every document parses and has apiVersion, kind, metadata.name;
  - core kinds go through the Kubernetes API models of python3-kubernetes: every field name must
    be one of the API's (recursively, by each model's attribute_map), and building the model
    enforces its required fields;
  - the edge workload's own rules: images agree, volume mounts name declared volumes, ConfigMaps
    named exist in the manifests or are listed as created by the operator, hugepages and the SR-IOV
    resource are requested = limited, the Multus annotation names the NetworkAttachmentDefinition
    whose resourceName is the one requested, only IPC_LOCK/NET_ADMIN/NET_RAW/SYS_NICE on edged and
    nothing privileged, probes and preStop use edgectl on the admin port, the Prometheus port is a
    container port, the PDB selects the pods.
Usage: check_manifests.py FILE [--external-configmap NAME] [--external-secret NAME]
Prints one line per finding; exit 1 when there is any."""
import argparse
import json
import sys

import kubernetes.client as k8s
import yaml

MODELS = {("v1", "ConfigMap"): "V1ConfigMap", ("v1", "Secret"): "V1Secret", ("apps/v1", "DaemonSet"): "V1DaemonSet",
          ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget", ("v1", "Service"): "V1Service"}
EDGED_CAPS = {"IPC_LOCK", "NET_ADMIN", "NET_RAW", "SYS_NICE"}


def field_check(data, type_name, path, out):
    """Unknown field names, by the API model's attribute_map (JSON names)."""
    if data is None:
        return
    if type_name.startswith("list["):
        for i, item in enumerate(data if isinstance(data, list) else []):
            field_check(item, type_name[5:-1], f"{path}[{i}]", out)
        if not isinstance(data, list):
            out.append(f"{path}: want a list")
        return
    if type_name.startswith("dict(") or type_name in ("str", "int", "bool", "float", "object", "datetime"):
        return
    cls = getattr(k8s, type_name, None)
    if cls is None:
        return
    if not isinstance(data, dict):
        out.append(f"{path}: want an object ({type_name})")
        return
    by_json = {v: a for a, v in cls.attribute_map.items()}
    for key, value in data.items():
        if key not in by_json:
            out.append(f"{path}.{key}: not a field of {type_name} (Kubernetes API)")
            continue
        field_check(value, cls.openapi_types[by_json[key]], f"{path}.{key}", out)


def check(docs, external_cm=(), external_secret=()):
    out = []
    objs = []
    for i, d in enumerate(docs):
        if d is None:
            continue
        where = f"document {i + 1}"
        for f in ("apiVersion", "kind", "metadata"):
            if f not in d:
                out.append(f"{where}: no {f}")
        if "metadata" in d and not (d["metadata"] or {}).get("name"):
            out.append(f"{where}: no metadata.name")
        name = f"{d.get('kind')}/{(d.get('metadata') or {}).get('name')}"
        model = MODELS.get((d.get("apiVersion"), d.get("kind")))
        if model:
            field_check(d, model, name, out)
            try:
                k8s.ApiClient()._ApiClient__deserialize(d, model)
            except (ValueError, TypeError) as e:
                out.append(f"{name}: {e}")
        elif d.get("kind") != "NetworkAttachmentDefinition":
            out.append(f"{name}: kind {d.get('apiVersion')} {d.get('kind')} is not checked by this test")
        objs.append(d)

    def find(kind):
        return [o for o in objs if o.get("kind") == kind]

    cms = {o["metadata"]["name"] for o in find("ConfigMap")} | set(external_cm)
    secrets = {o["metadata"]["name"] for o in find("Secret")} | set(external_secret)
    nads = {o["metadata"]["name"]: o for o in find("NetworkAttachmentDefinition")}
    for nad in nads.values():
        try:
            cfg = json.loads(nad["spec"]["config"])
            if "type" not in cfg or "cniVersion" not in cfg:
                out.append(f"NetworkAttachmentDefinition/{nad['metadata']['name']}: CNI config without type/cniVersion")
        except (KeyError, TypeError, ValueError) as e:
            out.append(f"NetworkAttachmentDefinition/{nad['metadata']['name']}: spec.config is not CNI JSON ({e})")
    for ds in find("DaemonSet"):
        name = f"DaemonSet/{ds['metadata']['name']}"
        tmpl = ds["spec"]["template"]
        pod, labels = tmpl["spec"], tmpl["metadata"].get("labels", {})
        sel = ds["spec"]["selector"].get("matchLabels", {})
        if any(labels.get(k) != v for k, v in sel.items()):
            out.append(f"{name}: selector {sel} does not select the pod labels {labels}")
        if not pod.get("nodeSelector"):
            out.append(f"{name}: no nodeSelector (edge runs on labelled nodes only)")
        if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
            out.append(f"{name}: host namespaces are not needed")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for v in volumes.values():
            if "configMap" in v and v["configMap"]["name"] not in cms:
                out.append(f"{name}: volume {v['name']} names ConfigMap {v['configMap']['name']}, which is nowhere")
            if "secret" in v and v["secret"]["secretName"] not in secrets:
                out.append(f"{name}: volume {v['name']} names Secret {v['secret']['secretName']}, which is nowhere")
        used = set()
        containers = pod["containers"]
        ports = set()
        for c in containers:
            for m in c.get("volumeMounts", []):
                used.add(m["name"])
                if m["name"] not in volumes:
                    out.append(f"{name}: container {c.get('name')} mounts {m['name']}, which is not a volume")
            for p in c.get("ports", []):
                ports.add(p["containerPort"])
            sc = c.get("securityContext", {})
            if sc.get("privileged"):
                out.append(f"{name}: container {c.get('name')} is privileged")
            if sc.get("allowPrivilegeEscalation", True):
                out.append(f"{name}: container {c.get('name')} allows privilege escalation")
            if "ALL" not in (sc.get("capabilities", {}).get("drop") or []):
                out.append(f"{name}: container {c.get('name')} does not drop ALL capabilities")
        for v in volumes:
            if v not in used:
                out.append(f"{name}: volume {v} is mounted by no container")
        edged = [c for c in containers if c.get("name") == "edged"]
        if len(edged) != 1:
            out.append(f"{name}: want one container named edged")
            continue
        e = edged[0]
        images = {c["image"].rsplit(":", 1)[0]: c["image"] for c in containers}
        if len({img for c in containers for img in [c["image"]] if img.rsplit(":", 1)[0] == e["image"].rsplit(":", 1)[0]}) != 1:
            out.append(f"{name}: the containers run different tags of edged's image: {images}")
        caps = set(e.get("securityContext", {}).get("capabilities", {}).get("add") or [])
        if caps != EDGED_CAPS:
            out.append(f"{name}: edged's capabilities {sorted(caps)}, want exactly {sorted(EDGED_CAPS)}")
        res = e.get("resources", {})
        req, lim = res.get("requests", {}), res.get("limits", {})
        for r in ("hugepages-2Mi", "hugepages-1Gi", "cpu", "memory"):
            if r not in req or str(req.get(r)) != str(lim.get(r)):
                out.append(f"{name}: edged resource {r}: requests {req.get(r)} != limits {lim.get(r)} (Guaranteed QoS)")
        if not str(req.get("cpu", "0.5")).isdigit():
            out.append(f"{name}: edged cpu {req.get('cpu')}: want whole CPUs (static CPU manager policy)")
        mounts = {m["name"] for m in e.get("volumeMounts", [])}
        for size in ("2Mi", "1Gi"):
            vol = [v for v, d in volumes.items() if d.get("emptyDir", {}).get("medium") == f"HugePages-{size}"]
            if not vol or vol[0] not in mounts:
                out.append(f"{name}: edged has no HugePages-{size} emptyDir mounted")
        ann = tmpl["metadata"].get("annotations", {})
        nets = [n.strip() for n in ann.get("k8s.v1.cni.cncf.io/networks", "").split(",") if n.strip()]
        if not nets:
            out.append(f"{name}: no Multus k8s.v1.cni.cncf.io/networks annotation")
        for n in nets:
            nad = nads.get(n.split("/")[-1].split("@")[0])
            if nad is None:
                out.append(f"{name}: network {n} has no NetworkAttachmentDefinition")
                continue
            rn = nad["metadata"].get("annotations", {}).get("k8s.v1.cni.cncf.io/resourceName")
            if rn is None or str(req.get(rn)) != "1" or str(lim.get(rn)) != "1":
                out.append(f"{name}: edged does not request and limit one {rn} (the network's SR-IOV resource)")
        if ann.get("prometheus.io/scrape") == "true":
            try:
                if int(ann.get("prometheus.io/port", "0")) not in ports:
                    out.append(f"{name}: prometheus.io/port {ann.get('prometheus.io/port')} is no container port")
            except ValueError:
                out.append(f"{name}: prometheus.io/port is not a number")
        else:
            out.append(f"{name}: no Prometheus scrape annotations")
        for probe in ("livenessProbe", "readinessProbe"):
            cmd = e.get(probe, {}).get("exec", {}).get("command", [])
            if not cmd or not cmd[0].endswith("edgectl") or "health" not in cmd:
                out.append(f"{name}: edged {probe} is not `edgectl health` on the admin API: {cmd}")
        pre = e.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        if "drain" not in pre:
            out.append(f"{name}: edged has no preStop drain: {pre}")
        if not any(c.get("name") == "bird" for c in containers):
            out.append(f"{name}: no BIRD sidecar")
        tgp = pod.get("terminationGracePeriodSeconds", 30)
        edged_cm = [o for o in find("ConfigMap") if "edged.yaml" in o.get("data", {})]
        if edged_cm:
            sd = (yaml.safe_load(edged_cm[0]["data"]["edged.yaml"]) or {}).get("shutdown", {})
            need = (sd.get("grace_ms", 0) + sd.get("drain_timeout_ms", 5000)) / 1000
            if tgp <= need:
                out.append(f"{name}: terminationGracePeriodSeconds {tgp} does not cover the drain ({need:.0f} s)")
    for pdb in find("PodDisruptionBudget"):
        sel = pdb["spec"].get("selector", {}).get("matchLabels", {})
        if not any(all(ds["spec"]["template"]["metadata"].get("labels", {}).get(k) == v for k, v in sel.items())
                   for ds in find("DaemonSet")):
            out.append(f"PodDisruptionBudget/{pdb['metadata']['name']}: selects no pod of the manifests")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--external-configmap", action="append", default=[])
    ap.add_argument("--external-secret", action="append", default=[])
    a = ap.parse_args()
    with open(a.file) as f:
        docs = list(yaml.safe_load_all(f))
    findings = check(docs, a.external_configmap, a.external_secret)
    for x in findings:
        print(x)
    sys.exit(1 if findings else 0)


if __name__ == "__main__":
    main()
