"""Installed package versions, recorded in model manifests and bench results."""

from importlib import metadata


def installed_versions(names) -> dict[str, str]:
    """``{name: version}`` for each installed package in ``names`` (absent ones left out)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
