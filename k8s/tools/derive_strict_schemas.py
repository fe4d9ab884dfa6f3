"""Derive the strict JSON schemas of RayCluster and RayJob that tests/test_k8s.py validates the manifests against.

Source: the KubeRay CRDs (ray-project/kuberay, ray-operator/config/crd/bases/ray.io_*.yaml, of a release whose
RayCluster has `authOptions.secretName`). For each CRD the served storage version's
`openAPIV3Schema` is taken and made strict:

- every object schema that lists `properties` gets `additionalProperties: false`, unless it carries
  `x-kubernetes-preserve-unknown-fields: true` (Kubernetes keeps unknown fields there, so must we);
- the `x-kubernetes-*` annotations are dropped (JSON-schema validators ignore them; they only add bytes).

Structural CRD schemas never combine `properties` with `additionalProperties`, so nothing is overwritten. The API
server prunes unknown fields silently instead of rejecting them; the strict schema turns such a typo into an
error. Run from the repository root:

    python k8s/tools/derive_strict_schemas.py PATH/TO/kuberay/ray-operator/config/crd/bases
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

CRDS = {"raycluster": "ray.io_rayclusters.yaml", "rayjob": "ray.io_rayjobs.yaml"}
SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


def storage_schema(crd: dict) -> tuple[str, dict]:
    """(version name, openAPIV3Schema) of the version the API server stores."""
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    return version["name"], version["schema"]["openAPIV3Schema"]


def make_strict(node):
    """A copy of `node` with additionalProperties: false wherever properties are listed (see module docstring)."""
    if isinstance(node, list):
        return [make_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    strict = {key: make_strict(value) for key, value in node.items() if not key.startswith("x-kubernetes-")}
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        strict["additionalProperties"] = False
    return strict


def derive(crd_dir: Path) -> dict[str, dict]:
    """Kind (lower case) -> strict JSON schema, from the CRD files in `crd_dir`."""
    schemas = {}
    for kind, filename in CRDS.items():
        crd = yaml.load((crd_dir / filename).read_text(), Loader=yaml.CSafeLoader)
        version, schema = storage_schema(crd)
        strict = make_strict(schema)
        strict["$comment"] = (f"Strict variant of {crd['metadata']['name']} {version} openAPIV3Schema, "
                              f"made by k8s/tools/derive_strict_schemas.py from {filename}")
        schemas[kind] = strict
    return schemas


def schema_path(kind: str) -> Path:
    return SCHEMA_DIR / f"{kind}.strict.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("crd_dir", type=Path, help="directory holding ray.io_rayclusters.yaml and ray.io_rayjobs.yaml")
    args = parser.parse_args()
    for kind, schema in derive(args.crd_dir).items():
        schema_path(kind).write_text(json.dumps(schema, sort_keys=True, separators=(",", ":")) + "\n")
        print(schema_path(kind))


if __name__ == "__main__":
    main()
