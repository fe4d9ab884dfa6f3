"""Render a kustomization directory without kubectl: the subset of kustomize that k8s/ uses.

For machines without `kubectl kustomize` (tests use both and check they agree). Supported: `resources` (files
and directories), `namespace`, `images`, `configMapGenerator` (files; `behavior` create or replace; name suffix
hash disabled), `patches` (JSON 6902 operation lists with a `target`, and `$patch: delete`) and `replacements`
(whole fields, `create` option). Transformers run in kustomize's order: patches, namespace, images, then
replacements. Anything else in a kustomization raises, so a manifest change that outgrows this renderer fails
loudly instead of rendering differently. Usage: `python k8s/tools/kustomize_lite.py k8s/overlays/small`.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import yaml

SUPPORTED_KEYS = {"apiVersion", "kind", "resources", "namespace", "images", "configMapGenerator", "patches",
                  "replacements"}
CLUSTER_SCOPED_KINDS = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                        "PersistentVolume", "StorageClass", "PriorityClass"}
CONTAINER_LISTS = ("containers", "initContainers")


def render(directory: str | Path) -> list[dict]:
    """The objects `kubectl kustomize directory` would print (order aside)."""
    directory = Path(directory)
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED_KEYS
    if unsupported:
        raise NotImplementedError(f"{directory}/kustomization.yaml: {sorted(unsupported)} not supported here")
    objects = [obj for entry in kustomization.get("resources", []) for obj in _load(directory / entry)]
    for generator in kustomization.get("configMapGenerator", []):
        _generate_config_map(objects, generator, directory)
    for patch in kustomization.get("patches", []):
        _apply_patch(objects, patch, directory)
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED_KINDS:
                obj["metadata"]["namespace"] = kustomization["namespace"]
    for image in kustomization.get("images", []):
        for obj in objects:
            _retag(obj, image)
    for replacement in kustomization.get("replacements", []):
        _replace(objects, replacement)
    return objects


def _load(path: Path) -> list[dict]:
    if path.is_dir():
        return render(path)
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _generate_config_map(objects: list[dict], generator: dict, directory: Path) -> None:
    options = generator.get("options", {})
    if not options.get("disableNameSuffixHash"):
        raise NotImplementedError(f"configMapGenerator {generator['name']}: name suffix hashes are not supported")
    data = {}
    for entry in generator["files"]:
        key, _, file = entry.rpartition("=")
        data[key or Path(file).name] = (directory / file).read_text()
    metadata = {"name": generator["name"]}
    if options.get("labels"):
        metadata["labels"] = dict(options["labels"])
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}
    behavior = generator.get("behavior", "create")
    existing = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == generator["name"]]
    if behavior == "create" and not existing:
        objects.append(config_map)
    elif behavior == "replace" and len(existing) == 1:
        objects[objects.index(existing[0])] = config_map
    else:
        raise ValueError(f"configMapGenerator {generator['name']}: behavior {behavior!r} with "
                         f"{len(existing)} existing ConfigMaps of that name")


def _matches(obj: dict, selector: dict) -> bool:
    group, _, version = obj["apiVersion"].rpartition("/")
    fields = {"group": group, "version": version, "kind": obj["kind"], "name": obj["metadata"]["name"]}
    return all(fields[key] == value for key, value in selector.items())


def _apply_patch(objects: list[dict], patch: dict, directory: Path) -> None:
    text = patch["patch"] if "patch" in patch else (directory / patch["path"]).read_text()
    body = yaml.safe_load(text)
    if isinstance(body, list):
        targets = [obj for obj in objects if _matches(obj, patch["target"])]
        if not targets:
            raise ValueError(f"patch target {patch['target']} matches nothing")
        for obj in targets:
            for operation in body:
                _json6902(obj, operation)
    elif isinstance(body, dict) and body.get("$patch") == "delete":
        doomed = [o for o in objects if o["kind"] == body["kind"] and o["metadata"]["name"] == body["metadata"]["name"]]
        if not doomed:
            raise ValueError(f"delete patch for {body['kind']}/{body['metadata']['name']} matches nothing")
        objects[:] = [o for o in objects if o not in doomed]
    else:
        raise NotImplementedError("only JSON 6902 operation lists and $patch: delete are supported")


def _pointer(path: str) -> list[str]:
    return [part.replace("~1", "/").replace("~0", "~") for part in path.lstrip("/").split("/")]


def _json6902(obj: dict, operation: dict) -> None:
    *parents, leaf = _pointer(operation["path"])
    node = obj
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key = int(leaf) if isinstance(node, list) and leaf != "-" else leaf
    op = operation["op"]
    if op == "test":
        if node[key] != operation["value"]:
            raise ValueError(f"test failed at {operation['path']}: {node[key]!r} != {operation['value']!r}")
    elif op == "remove":
        del node[key]
    elif op == "replace":
        node[key]  # replace requires the target to exist
        node[key] = copy.deepcopy(operation["value"])
    elif op == "add":
        if isinstance(node, list):
            node.insert(len(node) if key == "-" else key, copy.deepcopy(operation["value"]))
        else:
            node[key] = copy.deepcopy(operation["value"])
    else:
        raise NotImplementedError(f"JSON 6902 op {op!r}")


def _retag(node, image: dict) -> None:
    """Point every container image named image['name'] at newName:newTag, at any depth (as kustomize does)."""
    if isinstance(node, list):
        for item in node:
            _retag(item, image)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in CONTAINER_LISTS and isinstance(value, list):
            for container in value:
                name, _, tag = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
        _retag(value, image)


def _replace(objects: list[dict], replacement: dict) -> None:
    source_selector = replacement["source"]
    (source,) = [o for o in objects if _matches(o, {k: v for k, v in source_selector.items() if k != "fieldPath"})]
    value = source
    for part in source_selector["fieldPath"].split("."):
        value = value[part]
    for target in replacement["targets"]:
        create = target.get("options", {}).get("create", False)
        for obj in (o for o in objects if _matches(o, target["select"])):
            for field_path in target["fieldPaths"]:
                *parents, leaf = field_path.split(".")
                node = obj
                for part in parents:
                    node = node.setdefault(part, {}) if create else node[part]
                if leaf not in node and not create:
                    raise KeyError(f"{obj['kind']}/{obj['metadata']['name']} has no {field_path}")
                node[leaf] = copy.deepcopy(value)


if __name__ == "__main__":
    print(yaml.safe_dump_all(render(sys.argv[1]), sort_keys=False), end="")
