"""Supply-chain records for built images: an SPDX SBOM and SLSA provenance, attached as OCI 1.1
referrers (artifact manifests whose ``subject`` is the image manifest), never as index entries."""
