"""The cores of the seed's single-purpose scripts: context monitor, process monitor, failure handler, retry, aborter."""
