"""The CRD files: structural, Loft's group and field names, status subresource, printer columns."""

from __future__ import annotations

from controlplane.crds import load_crds


def test_crds_shape() -> None:
    crds = {c["spec"]["names"]["kind"]: c for c in load_crds()}
    assert set(crds) == {
        "VirtualClusterInstance",
        "SpaceInstance",
        "VirtualClusterTemplate",
        "SpaceTemplate",
        "Project",
    }
    for kind, crd in crds.items():
        assert crd["spec"]["group"] == "management.loft.sh"
        version = crd["spec"]["versions"][0]
        assert version["name"] == "v1" and version["subresources"] == {"status": {}}
        assert version["additionalPrinterColumns"]
        expected = "Namespaced" if kind.endswith("Instance") else "Cluster"
        assert crd["spec"]["scope"] == expected
    vci = crds["VirtualClusterInstance"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    assert {"displayName", "owner", "templateRef", "template", "clusterRef", "parameters"} <= set(
        vci["spec"]["properties"]
    )
    status_fields = {"phase", "reason", "message", "deployHash", "conditions", "virtualCluster"}
    assert status_fields | {"syncedTemplate"} <= set(vci["status"]["properties"])
    si = crds["SpaceInstance"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    assert {"space", "syncedTemplate"} <= set(si["status"]["properties"])
    # the recorded template keeps every field (a template's definition is open-ended)
    assert si["status"]["properties"]["syncedTemplate"]["x-kubernetes-preserve-unknown-fields"] is True
    params = crds["VirtualClusterTemplate"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "spec"
    ]["properties"]["parameters"]
    assert {"variable", "type", "required", "defaultValue", "options", "validation"} <= set(
        params["items"]["properties"]
    )
