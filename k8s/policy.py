#!/usr/bin/env python3
"""Policy test over one rendered overlay (the output of `kubectl kustomize`).

Usage: policy.py OVERLAY RENDERED.yaml --builtin-out FILE --toml-dir DIR

- Writes the built-in Kubernetes objects to FILE (for kubernetes-validate,
  which has schemas for those only) and names every custom resource it
  leaves out, with the reason.
- Writes each central ConfigMap's central.toml to DIR (for
  `central validate`).
- Checks the rules below and exits 1 listing every violation.

Rules, every overlay: each container has CPU and memory requests and
limits, liveness and readiness probes, runAsNonRoot, readOnlyRootFilesystem,
no privilege escalation, all capabilities dropped and the RuntimeDefault
seccomp profile; GPUs only for inference and llm; a default-deny
NetworkPolicy for ingress and egress; no Secret with data; everything in
namespace inspection-system; each central Deployment runs the role its
label names. Production: the autoscaling ranges of the design (upload
2-10, worker 2-20, inference 2-8, llm 1-2; api 2-6) and a
PodDisruptionBudget for each of them. k3s: one replica each, no GPU, no KEDA.
"""

import argparse
import os
import sys

import yaml

NAMESPACE = "inspection-system"
GPU = "nvidia.com/gpu"
GPU_WORKLOADS = {"inference", "llm"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
CENTRAL_ROLES = {"broker", "bridge", "upload", "worker", "inference", "api"}
# Production autoscaling ranges from the design (SYSTEM.md, "Kubernetes"),
# and the staff API's CPU HPA.
PRODUCTION_RANGES = {"upload": (2, 10), "worker": (2, 20), "inference": (2, 8), "llm": (1, 2), "api": (2, 6)}
# Custom resources: kubernetes-validate has no schema for them, so they are
# left out of its input by name, with why; the checks below cover the
# fields this project depends on.
CUSTOM = {
    "keda.sh": "KEDA CRD (no schema in kubernetes-validate); ranges checked by policy",
    "postgresql.cnpg.io": "CloudNativePG CRD (no schema in kubernetes-validate)",
    "monitoring.coreos.com": "Prometheus Operator CRD (no schema in kubernetes-validate); alert names checked by policy",
    "external-secrets.io": "external-secrets CRD (no schema in kubernetes-validate); no inline values checked by policy",
    "argoproj.io": "ArgoCD CRD (no schema in kubernetes-validate)",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume", "StorageClass"}
LATENCY_EXPR = "histogram_quantile(0.95, sum by (le) (rate(inference_duration_seconds_bucket[5m]))) > 0.5"


def pod_spec(obj):
    spec = obj.get("spec", {})
    if obj["kind"] == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]["spec"]
    return spec["template"]["spec"]


def name_of(obj):
    return f'{obj["kind"]}/{obj["metadata"]["name"]}'


def check_workload(obj, problems, overlay):
    spec = pod_spec(obj)
    labels = obj["spec"]["template"]["metadata"].get("labels", {})
    workload = labels.get("app.kubernetes.io/component") or labels.get("app.kubernetes.io/name")
    pod_sc = spec.get("securityContext", {})
    where = name_of(obj)
    containers = spec.get("containers", []) + spec.get("initContainers", [])
    for c in containers:
        at = f'{where} container {c["name"]}'
        res = c.get("resources", {})
        for kind in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in res.get(kind, {}):
                    problems.append(f"{at}: no {kind}.{r}")
        if c in spec.get("containers", []):
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in c:
                    problems.append(f"{at}: no {probe}")
        sc = c.get("securityContext", {})
        if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot", False)):
            problems.append(f"{at}: runAsNonRoot is not true")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{at}: readOnlyRootFilesystem is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{at}: allowPrivilegeEscalation is not false")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            problems.append(f"{at}: capabilities.drop lacks ALL")
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        if seccomp != "RuntimeDefault":
            problems.append(f"{at}: seccompProfile is {seccomp!r}, not RuntimeDefault")
        gpu = GPU in res.get("requests", {}) or GPU in res.get("limits", {})
        if gpu and workload not in GPU_WORKLOADS:
            problems.append(f"{at}: requests a GPU but is not inference or llm")
        if gpu and overlay == "k3s":
            problems.append(f"{at}: requests a GPU in the k3s overlay (no GPU node)")
    if labels.get("app.kubernetes.io/name") == "central":
        role = labels.get("app.kubernetes.io/component")
        args = spec["containers"][0].get("args", [])
        if role not in CENTRAL_ROLES or "--roles" not in args or args[args.index("--roles") + 1] != role:
            problems.append(f"{where}: component label {role!r} and --roles in {args} disagree")
        ports = {p.get("name"): p.get("containerPort") for p in spec["containers"][0].get("ports", [])}
        if ports.get("ops") != 9465:
            problems.append(f"{where}: no container port `ops` 9465 (probes and PodMonitor use it)")
    if overlay == "k3s" and obj["kind"] in ("Deployment", "StatefulSet"):
        if obj["spec"].get("replicas") != 1:
            problems.append(f"{where}: replicas {obj['spec'].get('replicas')} in k3s (one node: 1)")


def autoscaling_ranges(docs):
    """Target Deployment -> (min, max, source) from HPAs and ScaledObjects."""
    ranges = {}
    for d in docs:
        if d["kind"] == "HorizontalPodAutoscaler":
            ranges[d["spec"]["scaleTargetRef"]["name"]] = (
                d["spec"].get("minReplicas", 1), d["spec"]["maxReplicas"], name_of(d))
        elif d["kind"] == "ScaledObject":
            ranges[d["spec"]["scaleTargetRef"]["name"]] = (
                d["spec"].get("minReplicaCount", 0), d["spec"].get("maxReplicaCount", 100), name_of(d))
    return ranges


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("overlay")
    ap.add_argument("rendered")
    ap.add_argument("--builtin-out", required=True)
    ap.add_argument("--toml-dir", required=True)
    args = ap.parse_args()
    overlay = args.overlay

    with open(args.rendered) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    problems = []
    builtin, skipped = [], []
    for d in docs:
        group = d["apiVersion"].split("/")[0] if "/" in d["apiVersion"] else ""
        if group in CUSTOM:
            skipped.append(f'{name_of(d)} ({d["apiVersion"]}): {CUSTOM[group]}')
        elif "." in group and not group.endswith(".k8s.io"):
            problems.append(f"{name_of(d)}: custom resource of unknown group {group}: add it to CUSTOM in policy.py")
        else:
            builtin.append(d)
        if d["kind"] not in CLUSTER_SCOPED and d["metadata"].get("namespace") != NAMESPACE:
            problems.append(f"{name_of(d)}: namespace {d['metadata'].get('namespace')!r}, not {NAMESPACE}")

    with open(args.builtin_out, "w") as f:
        yaml.safe_dump_all(builtin, f, sort_keys=False)
    for line in skipped:
        print(f"  skip (CRD) {line}")

    os.makedirs(args.toml_dir, exist_ok=True)
    tomls = 0
    for d in docs:
        if d["kind"] == "ConfigMap" and "central.toml" in d.get("data", {}):
            with open(os.path.join(args.toml_dir, d["metadata"]["name"] + ".toml"), "w") as f:
                f.write(d["data"]["central.toml"])
            tomls += 1
    if tomls == 0:
        problems.append("no ConfigMap with a central.toml")

    kinds = {}
    for d in docs:
        kinds.setdefault(d["kind"], []).append(d)
        if d["kind"] in WORKLOAD_KINDS:
            check_workload(d, problems, overlay)
        if d["kind"] == "Secret" and (d.get("data") or d.get("stringData")):
            problems.append(f"{name_of(d)}: a Secret with values is committed (use an ExternalSecret)")
        if d["kind"] == "ExternalSecret":
            for item in d["spec"].get("data", []):
                if "remoteRef" not in item:
                    problems.append(f"{name_of(d)}: data item {item.get('secretKey')} has no remoteRef")

    deny = [
        d for d in kinds.get("NetworkPolicy", [])
        if d["spec"].get("podSelector") == {}
        and set(d["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not d["spec"].get("ingress") and not d["spec"].get("egress")
    ]
    if not deny:
        problems.append("no default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules)")

    rules = [r for d in kinds.get("PrometheusRule", []) for g in d["spec"]["groups"] for r in g["rules"]]
    latency = [r for r in rules if r.get("alert") == "HighInferenceLatency"]
    if not latency or latency[0]["expr"].strip() != LATENCY_EXPR or latency[0].get("for") != "5m":
        problems.append(f"HighInferenceLatency must be `{LATENCY_EXPR}` for 5m")

    deployments = {d["metadata"]["name"] for d in kinds.get("Deployment", [])}
    ranges = autoscaling_ranges(docs)
    if overlay == "production":
        pdbs = kinds.get("PodDisruptionBudget", [])
        for target, (lo, hi) in PRODUCTION_RANGES.items():
            got = ranges.get(target)
            if got is None:
                problems.append(f"{target}: no HPA or ScaledObject (design: {lo}-{hi})")
            elif got[:2] != (lo, hi):
                problems.append(f"{target}: {got[2]} scales {got[0]}-{got[1]}, design says {lo}-{hi}")
            if target not in deployments:
                problems.append(f"{target}: autoscaled, but no Deployment of that name")
            pod_labels = next((d["spec"]["template"]["metadata"].get("labels", {})
                               for d in kinds.get("Deployment", []) if d["metadata"]["name"] == target), {})
            if not any(p["spec"]["selector"].get("matchLabels", {}).items() <= pod_labels.items() for p in pdbs):
                problems.append(f"{target}: no PodDisruptionBudget selects its pods")
        if not kinds.get("Cluster"):
            problems.append("production: no CloudNativePG Cluster")
    if overlay == "k3s" and kinds.get("ScaledObject"):
        problems.append("k3s: ScaledObjects present, but the k3s overlay must not need KEDA")

    for target, (lo, hi, src) in ranges.items():
        if lo > hi or lo < 1:
            problems.append(f"{src}: range {lo}-{hi} is not sensible")

    counts = ", ".join(f"{len(v)} {k}" for k, v in sorted(kinds.items()))
    print(f"  rendered: {counts}")
    print(f"  {len(builtin)} built-in objects for kubernetes-validate, {len(skipped)} custom resources skipped, {tomls} central.toml extracted")
    if problems:
        for p in problems:
            print(f"  POLICY FAIL {p}")
        return 1
    print(f"  policy: ok ({sum(len(v) for k, v in kinds.items() if k in WORKLOAD_KINDS)} workloads checked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
