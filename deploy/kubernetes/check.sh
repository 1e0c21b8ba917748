#!/usr/bin/env bash
# Checks the kustomize base in deploy/kubernetes, offline (no cluster needed):
#   1. prometheusrule.yaml is what gen-prometheusrule.py makes from monitoring/alerts.yml now;
#   2. the base renders (kubectl kustomize, or kustomize build);
#   3. the rendered built-in objects (ConfigMap, Service, Deployment) validate against the Kubernetes
#      schemas with `kubernetes-validate --strict` (installed with pip when missing);
#   4. the objects kubernetes-validate has no schema for (ServiceMonitor, PrometheusRule: CRDs, which it
#      only warns about and passes) get a structural check, and the Deployment's security settings and
#      probes are asserted, so an edit cannot drop them silently.
# Run it from anywhere (it works from the repository root): bash deploy/kubernetes/check.sh
# With CI=true a missing kubectl/kustomize is an error instead of a skip.
# K8S_VERSION picks the Kubernetes schema version (default below; any kubernetes-validate bundles).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
base=deploy/kubernetes
k8s_version="${K8S_VERSION:-1.32.0}"
# The version installed when the command is missing (1.37.0 bundles the schemas of Kubernetes 1.25-1.37).
validator_pip="kubernetes-validate==1.37.0"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

fail() {
    echo "check.sh: FAILED: $*" >&2
    exit 1
}

# 1. The PrometheusRule is generated, never edited.
python3 "$base/gen-prometheusrule.py" -o "$tmp/prometheusrule.yaml"
if ! diff -u "$base/prometheusrule.yaml" "$tmp/prometheusrule.yaml" >"$tmp/rule.diff"; then
    cat "$tmp/rule.diff" >&2
    fail "$base/prometheusrule.yaml differs from a fresh generation from monitoring/alerts.yml: do not edit it," \
        "run python3 $base/gen-prometheusrule.py (and commit the result)"
fi
echo "check.sh: 1/4 prometheusrule.yaml is up to date with monitoring/alerts.yml"

# 2. Render.
if command -v kubectl >/dev/null 2>&1; then
    renderer="kubectl kustomize ($(kubectl version --client -o json 2>/dev/null |
        python3 -c 'import json, sys; print("kustomize " + json.load(sys.stdin).get("kustomizeVersion", "?"))' 2>/dev/null ||
        echo "kustomize ?"))"
    kubectl kustomize "$base" >"$tmp/rendered.yaml" || fail "kubectl kustomize $base failed"
elif command -v kustomize >/dev/null 2>&1; then
    renderer="kustomize build ($(kustomize version 2>/dev/null | head -n 1))"
    kustomize build "$base" >"$tmp/rendered.yaml" || fail "kustomize build $base failed"
else
    echo "################################################################################################" >&2
    echo "check.sh: SKIPPED: neither kubectl nor kustomize is installed: the base was NOT rendered, NOT" >&2
    echo "check.sh: SKIPPED: validated against the Kubernetes schemas, and its security settings NOT checked" >&2
    echo "################################################################################################" >&2
    if [ "${CI:-}" = "true" ]; then
        fail "CI=true: kubectl or kustomize is required"
    fi
    echo "check.sh: SKIPPED (partial): only the PrometheusRule generation was checked"
    exit 0
fi
echo "check.sh: 2/4 rendered with $renderer"

# 3. The built-in objects against the Kubernetes schemas.
if ! python3 -c 'import yaml' 2>/dev/null; then
    python3 -m pip install --quiet pyyaml || fail "PyYAML is needed: pip install pyyaml"
fi
if command -v kubernetes-validate >/dev/null 2>&1; then
    validate=(kubernetes-validate)
elif python3 -c 'import kubernetes_validate' 2>/dev/null; then
    validate=(python3 -m kubernetes_validate)
else
    echo "check.sh: kubernetes-validate is missing: python3 -m pip install --quiet $validator_pip"
    python3 -m pip install --quiet "$validator_pip" || fail "cannot install $validator_pip"
    validate=(python3 -m kubernetes_validate)
fi
validator_version="$("${validate[@]}" --version)"

# One file per object: the CRDs go to the structural check (4), everything else to kubernetes-validate.
mkdir "$tmp/builtin"
python3 - "$tmp/rendered.yaml" "$tmp/builtin" <<'PY'
import sys, yaml
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
rendered, out = sys.argv[1], sys.argv[2]
with open(rendered) as f:
    docs = [d for d in yaml.safe_load_all(f) if d is not None]
for i, doc in enumerate(docs):
    if (doc.get("apiVersion"), doc.get("kind")) in CRDS:
        continue
    name = "%02d-%s-%s.yaml" % (i, str(doc.get("kind")).lower(), doc.get("metadata", {}).get("name"))
    with open("%s/%s" % (out, name), "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
PY
builtin_files=("$tmp"/builtin/*.yaml)
if ! "${validate[@]}" --strict --kubernetes-version "$k8s_version" "${builtin_files[@]}" >"$tmp/validate.log" 2>&1; then
    sed "s#$tmp/builtin/##" "$tmp/validate.log" >&2
    fail "kubernetes-validate --strict (Kubernetes $k8s_version) rejected the rendered manifests"
fi
# An unknown apiVersion/kind is only a warning there (and exit 0): a typo in a built-in one must fail.
if grep -i "find schema" "$tmp/validate.log" >&2; then
    fail "kubernetes-validate has no schema for a built-in object (a misspelt apiVersion or kind?)"
fi
echo "check.sh: 3/4 ${#builtin_files[@]} built-in objects valid (kubernetes-validate $validator_version --strict," \
    "Kubernetes $k8s_version)"

# 4. The CRDs' structure, and what the Deployment must keep.
python3 - "$tmp/rendered.yaml" monitoring/alerts.yml <<'PY'
import sys, yaml

rendered_path, alerts_path = sys.argv[1], sys.argv[2]
with open(rendered_path) as f:
    docs = [d for d in yaml.safe_load_all(f) if d is not None]
errors = []


def check(ok, message):
    if not ok:
        errors.append(message)
    return ok


def one(api_version, kind):
    found = [d for d in docs if d.get("apiVersion") == api_version and d.get("kind") == kind]
    check(len(found) == 1, "expected one %s %s, found %d" % (api_version, kind, len(found)))
    return found[0] if found else {}


NAME = "kobo-exporter"
LABELS = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "kobo"}
expected_kinds = {("v1", "ConfigMap"), ("v1", "Service"), ("apps/v1", "Deployment"),
                  ("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
kinds = sorted((str(d.get("apiVersion")), str(d.get("kind"))) for d in docs)
check(sorted(expected_kinds) == kinds, "objects rendered: %s, expected %s" % (kinds, sorted(expected_kinds)))
check(not any(d.get("kind") == "Secret" for d in docs), "a Secret is rendered: it must not be in git")
for d in docs:
    meta = d.get("metadata") or {}
    labels = meta.get("labels") or {}
    check(bool(meta.get("name")), "%s without metadata.name" % d.get("kind"))
    check(all(labels.get(k) == v for k, v in LABELS.items()),
          "%s %s: labels %s, expected %s" % (d.get("kind"), meta.get("name"), labels, LABELS))

configmap = one("v1", "ConfigMap")
service = one("v1", "Service")
deployment = one("apps/v1", "Deployment")
monitor = one("monitoring.coreos.com/v1", "ServiceMonitor")
rule = one("monitoring.coreos.com/v1", "PrometheusRule")

# Deployment: identity, security, probes, volumes.
check(deployment.get("metadata", {}).get("name") == NAME, "Deployment is not named %s" % NAME)
dspec = deployment.get("spec") or {}
check(dspec.get("replicas") == 1, "Deployment replicas %r, expected 1" % dspec.get("replicas"))
template = dspec.get("template") or {}
pod_labels = (template.get("metadata") or {}).get("labels") or {}
selector = (dspec.get("selector") or {}).get("matchLabels") or {}
check(selector and all(pod_labels.get(k) == v for k, v in selector.items()),
      "Deployment selector %s does not match its pod labels %s" % (selector, pod_labels))
pod = template.get("spec") or {}
check(pod.get("automountServiceAccountToken") is False, "pod: automountServiceAccountToken must be false")
psc = pod.get("securityContext") or {}
check(psc.get("runAsNonRoot") is True, "pod securityContext: runAsNonRoot must be true")
for key in ("runAsUser", "runAsGroup", "fsGroup"):
    check(psc.get(key) == 65532, "pod securityContext: %s %r, expected 65532" % (key, psc.get(key)))
check((psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault",
      "pod securityContext: seccompProfile.type must be RuntimeDefault")
containers = pod.get("containers") or []
check(len(containers) == 1, "expected one container, found %d" % len(containers))
for c in containers + (pod.get("initContainers") or []):
    name = c.get("name")
    sc = c.get("securityContext") or {}
    check(sc.get("readOnlyRootFilesystem") is True, "container %s: readOnlyRootFilesystem must be true" % name)
    check(sc.get("allowPrivilegeEscalation") is False, "container %s: allowPrivilegeEscalation must be false" % name)
    check(sc.get("privileged") is False, "container %s: privileged must be false" % name)
    caps = sc.get("capabilities") or {}
    check("ALL" in (caps.get("drop") or []), "container %s: capabilities.drop must hold ALL" % name)
    check(not caps.get("add"), "container %s: capabilities.add must be empty" % name)
    check(sc.get("runAsUser") in (None, 65532) and sc.get("runAsNonRoot") is not False,
          "container %s: overrides the pod's non-root user" % name)
c = containers[0] if containers else {}
check(c.get("args") == ["--config", "/etc/kobo-exporter/Rocket.toml"], "container args %r" % c.get("args"))
ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
check(ports.get("metrics") == 10120, "container port `metrics` is %r, expected 10120" % ports.get("metrics"))
for probe, path in (("livenessProbe", "/-/healthy"), ("readinessProbe", "/-/ready")):
    get = (c.get(probe) or {}).get("httpGet") or {}
    check(get.get("path") == path and get.get("port") in (10120, "metrics"),
          "%s: httpGet %s, expected path %s on port 10120" % (probe, get, path))
limits = (c.get("resources") or {}).get("limits") or {}
requests = (c.get("resources") or {}).get("requests") or {}
check(bool(limits.get("memory")) and bool(requests.get("memory")) and bool(requests.get("cpu")),
      "container resources: memory limit and cpu/memory requests are required")
mounts = {m.get("mountPath"): m for m in c.get("volumeMounts") or []}
volumes = {v.get("name"): v for v in pod.get("volumes") or []}


def volume_at(path):
    mount = mounts.get(path)
    if not check(mount is not None, "nothing mounted at %s" % path):
        return {}, {}
    return mount, volumes.get(mount.get("name")) or {}


mount, vol = volume_at("/etc/kobo-exporter")
check(mount.get("readOnly") is True, "/etc/kobo-exporter must be mounted read-only")
check((vol.get("configMap") or {}).get("name") == configmap.get("metadata", {}).get("name"),
      "/etc/kobo-exporter is not the rendered ConfigMap %s" % configmap.get("metadata", {}).get("name"))
mount, vol = volume_at("/run/secrets/kobo-exporter")
check(mount.get("readOnly") is True, "/run/secrets/kobo-exporter must be mounted read-only")
secret = vol.get("secret") or {}
check(secret.get("secretName") == "kobo-exporter-db", "/run/secrets/kobo-exporter is not the Secret kobo-exporter-db")
check(secret.get("defaultMode") == 0o440, "Secret defaultMode %r, expected 0440" % secret.get("defaultMode"))
mount, vol = volume_at("/tmp")
check("emptyDir" in vol, "/tmp must be an emptyDir")

# ConfigMap: the generated one, with a Rocket.toml that matches the Deployment.
check(configmap.get("metadata", {}).get("name", "").startswith("kobo-exporter-config-"),
      "ConfigMap %r: expected kobo-exporter-config-<hash>" % configmap.get("metadata", {}).get("name"))
rocket = (configmap.get("data") or {}).get("Rocket.toml")
if check(rocket is not None, "the ConfigMap has no key Rocket.toml"):
    try:
        import tomllib
    except ImportError:  # Python < 3.11: the TOML is not parsed
        tomllib = None
    if tomllib:
        release = tomllib.loads(rocket).get("release", {})
        check(release.get("address") == "0.0.0.0" and release.get("port") == 10120,
              "Rocket.toml [release]: address/port must be 0.0.0.0/10120")
        kobo = release.get("kobo", {})
        tables = [("kobo", kobo)] + [("kobo.hubs." + n, h) for n, h in (kobo.get("hubs") or {}).items()]
        for where, table in tables:
            pf = table.get("password_file")
            check(pf is None or pf.startswith("/run/secrets/kobo-exporter/"),
                  "Rocket.toml %s.password_file %r is not in the Secret's mount" % (where, pf))

# Service.
check(service.get("metadata", {}).get("name") == NAME, "Service is not named %s" % NAME)
sspec = service.get("spec") or {}
check(sspec.get("type", "ClusterIP") == "ClusterIP", "Service type %r" % sspec.get("type"))
sselector = sspec.get("selector") or {}
check(sselector.get("app.kubernetes.io/name") == NAME and all(pod_labels.get(k) == v for k, v in sselector.items()),
      "Service selector %s does not select the pods %s" % (sselector, pod_labels))
sports = {p.get("name"): p for p in sspec.get("ports") or []}
check((sports.get("metrics") or {}).get("port") == 10120
      and (sports.get("metrics") or {}).get("targetPort") in (10120, "metrics"),
      "Service port `metrics` must be 10120 to the container's `metrics`")

# ServiceMonitor: structure, and that it reaches the Service.
check(monitor.get("metadata", {}).get("name") == NAME, "ServiceMonitor is not named %s" % NAME)
mspec = monitor.get("spec") or {}
mselector = (mspec.get("selector") or {}).get("matchLabels") or {}
slabels = service.get("metadata", {}).get("labels") or {}
check(mselector and all(slabels.get(k) == v for k, v in mselector.items()),
      "ServiceMonitor selector %s does not select the Service's labels %s" % (mselector, slabels))
endpoints = mspec.get("endpoints") or []
check(endpoints, "ServiceMonitor: spec.endpoints is empty")
for e in endpoints:
    check(e.get("port") in sports, "ServiceMonitor endpoint port %r is not a Service port" % e.get("port"))
    check(e.get("path") in ("/metrics", "/probe"), "ServiceMonitor endpoint path %r" % e.get("path"))
    jobs = [r.get("replacement") for r in e.get("relabelings") or [] if r.get("targetLabel") == "job"]
    check(jobs and jobs[-1] in ("kobo", "kobo_exporter"),
          "ServiceMonitor endpoint %s: its job must be kobo or kobo_exporter (alerts.yml's)" % e.get("path"))
if endpoints:
    e = endpoints[0]
    check((e.get("path"), e.get("interval"), e.get("scrapeTimeout")) == ("/metrics", "30s", "10s"),
          "ServiceMonitor's first endpoint: expected /metrics every 30s, timeout 10s")

# PrometheusRule: structure, and exactly alerts.yml's groups (as rendered by kustomize).
check(rule.get("metadata", {}).get("name") == NAME, "PrometheusRule is not named %s" % NAME)
groups = (rule.get("spec") or {}).get("groups") or []
check(groups, "PrometheusRule: spec.groups is empty")
for g in groups:
    check(bool(g.get("name")) and bool(g.get("rules")), "PrometheusRule group %r: no name or no rules" % g.get("name"))
    for r in g.get("rules") or []:
        check(("alert" in r) != ("record" in r) and bool(r.get("expr")),
              "PrometheusRule group %s: rule %s needs one of alert/record, and expr" % (g.get("name"), r))
with open(alerts_path) as f:
    check((rule.get("spec") or {}) == yaml.safe_load(f),
          "PrometheusRule spec is not exactly monitoring/alerts.yml's groups")
alerts = sum(1 for g in groups for r in g.get("rules") or [] if "alert" in r)
records = sum(1 for g in groups for r in g.get("rules") or [] if "record" in r)

if errors:
    for e in errors:
        print("check.sh: FAILED: " + e, file=sys.stderr)
    sys.exit(1)
print("check.sh: 4/4 structure ok: ServiceMonitor (%d endpoint(s)), PrometheusRule (%d groups, %d alerts, %d records"
      " = alerts.yml), Deployment security settings and probes" % (len(endpoints), len(groups), alerts, records))
PY

echo "check.sh: OK: prometheusrule.yaml fresh; ${#builtin_files[@]} built-in objects valid against Kubernetes" \
    "$k8s_version (kubernetes-validate $validator_version --strict); ServiceMonitor, PrometheusRule and Deployment" \
    "checks passed; rendered with $renderer"
