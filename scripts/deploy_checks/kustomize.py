"""A small kustomize renderer for the subset k8s/ uses, so overlays can be checked offline.

Supported kustomization fields: resources (files and directories), namespace,
images (name -> newName/newTag/digest), replicas, patches (strategic-merge files or
inline, optionally with a target by kind/name). Anything else is an error: keep the
overlays simple, or teach this renderer first. Strategic merge is the usual one for
what we patch: maps merge, `null` deletes, lists of maps that all have a `name`
merge by name (containers, env, volumes, ports), other lists are replaced.
"""
from __future__ import annotations

import copy
import pathlib

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "images", "replicas", "patches"}
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "PersistentVolume", "StorageClass", "PriorityClass", "ClusterTriggerAuthentication"}


class KustomizeError(Exception):
    pass


def load_docs(path: pathlib.Path) -> list[dict]:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as e:
        raise KustomizeError(f"{path}: YAML error: {e}") from e
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d or "metadata" not in d:
            raise KustomizeError(f"{path}: a document is not a Kubernetes object (kind/metadata missing)")
    return docs


def key(obj: dict) -> tuple[str, str]:
    return obj["kind"], obj["metadata"].get("name", "")


def strategic_merge(base, patch):
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = strategic_merge(out[k], v)
            else:
                out[k] = copy.deepcopy(v)
        return out
    if (isinstance(base, list) and isinstance(patch, list)
            and all(isinstance(i, dict) and "name" in i for i in base + patch)):
        out = [copy.deepcopy(i) for i in base]
        index = {i["name"]: n for n, i in enumerate(out)}
        for item in patch:
            if item["name"] in index:
                out[index[item["name"]]] = strategic_merge(out[index[item["name"]]], item)
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def pod_containers(obj: dict) -> list[dict]:
    if obj.get("kind") not in POD_TEMPLATE_KINDS:
        return []
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    return list(spec.get("containers", [])) + list(spec.get("initContainers", []))


def split_image(image: str) -> tuple[str, str | None, str | None]:
    digest = None
    if "@" in image:
        image, digest = image.split("@", 1)
    name, tag = image, None
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = image.rsplit(":", 1)
    return name, tag, digest


def render(directory: pathlib.Path, _seen: frozenset = frozenset()) -> list[dict]:
    directory = directory.resolve()
    if directory in _seen:
        raise KustomizeError(f"{directory}: kustomization cycle")
    kfile = directory / "kustomization.yaml"
    if not kfile.is_file():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    k = yaml.safe_load(kfile.read_text()) or {}
    unknown = set(k) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{kfile}: unsupported field(s) {sorted(unknown)} (keep overlays simple)")

    objs: list[dict] = []
    for res in k.get("resources", []):
        path = directory / res
        if path.is_dir():
            objs.extend(render(path, _seen | {directory}))
        elif path.is_file():
            objs.extend(load_docs(path))
        else:
            raise KustomizeError(f"{kfile}: resource {res!r} does not exist")
    seen: set = set()
    for o in objs:
        if key(o) in seen:
            raise KustomizeError(f"{kfile}: duplicate object {key(o)}")
        seen.add(key(o))

    for p in k.get("patches", []):
        if "path" in p:
            ppath = directory / p["path"]
            if not ppath.is_file():
                raise KustomizeError(f"{kfile}: patch {p['path']!r} does not exist")
            patch_docs = load_docs(ppath)
            where = str(ppath)
        elif "patch" in p:
            patch_docs = [d for d in yaml.safe_load_all(p["patch"]) if d]
            where = f"{kfile} inline patch"
        else:
            raise KustomizeError(f"{kfile}: patch without path or patch")
        target = p.get("target")
        for doc in patch_docs:
            kind = (target or {}).get("kind") or doc.get("kind")
            name = (target or {}).get("name") or doc.get("metadata", {}).get("name")
            matches = [i for i, o in enumerate(objs) if key(o) == (kind, name)]
            if not matches:
                raise KustomizeError(f"{where}: patch targets {kind}/{name}, which is not in the resources")
            i = matches[0]
            if doc.get("apiVersion") and doc["apiVersion"] != objs[i]["apiVersion"]:
                raise KustomizeError(f"{where}: patch apiVersion {doc['apiVersion']} != {objs[i]['apiVersion']} of {kind}/{name}")
            objs[i] = strategic_merge(objs[i], doc)

    for img in k.get("images", []):
        hit = False
        for o in objs:
            for c in pod_containers(o):
                name, tag, digest = split_image(c.get("image", ""))
                if name != img["name"]:
                    continue
                hit = True
                name = img.get("newName", name)
                tag = img.get("newTag", tag)
                digest = img.get("digest", digest)
                c["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
        if not hit:
            raise KustomizeError(f"{kfile}: image {img['name']!r} is used by no container")

    for r in k.get("replicas", []):
        targets = [o for o in objs if o["metadata"].get("name") == r["name"]
                   and o["kind"] in {"Deployment", "StatefulSet", "ReplicaSet"}]
        if not targets:
            raise KustomizeError(f"{kfile}: replicas for {r['name']!r}, which is no Deployment/StatefulSet")
        for o in targets:
            o["spec"]["replicas"] = r["count"]

    if "namespace" in k:
        for o in objs:
            if o["kind"] not in CLUSTER_SCOPED:
                o["metadata"]["namespace"] = k["namespace"]
    return objs
