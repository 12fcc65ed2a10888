"""finmlops.deploy: GitOps helpers for the Kubernetes deployment in ``deploy/k8s``.

``release``: resolve registry aliases into an overlay's ``release.yaml`` (``finmlops deploy render|promote``);
``rules``: generate the PrometheusRule from the Prometheus alert rules file (``finmlops deploy rules``);
``checks``: policy checks on rendered manifests (resources, non-root, probes, no secret values, experiments).
"""
